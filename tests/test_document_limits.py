"`load_document` checks a file's size before reading it, and takes the damaged-PDF advice its error gives."
from pathlib import Path

import pytest

from tttlab.document import ConstraintError, DocumentValidator, PDFExtractionError, load_document, write_text_pdf
from tttlab.models import DocumentConstraints, load_tokenizer

TEXT = "\n\n".join(f"Paragraph {i} says the Quillmere tide gauge is read at dawn and at dusk." for i in range(8))


def test_oversized_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * 1001)
    def read_bytes(self): raise AssertionError(f"{self} was read before its size was checked")
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(ConstraintError, match="1,001 bytes, which exceeds max_bytes=1,000"):
        load_document(big, None, constraints=DocumentConstraints(max_bytes=1000))


def test_damaged_pdf_loads_only_when_asked(tmp_path):
    pdf = write_text_pdf(TEXT)
    damaged = pdf[:pdf.rindex(b"xref")]  # no cross-reference table or trailer: MuPDF rebuilds them
    path = tmp_path / "damaged.pdf"
    path.write_bytes(damaged)
    with pytest.raises(PDFExtractionError, match="pass accept_repaired=True"): load_document(path, None)
    assert not DocumentValidator().validate(damaged)[0]
    tok = load_tokenizer()
    doc = load_document(path, tok, chunk_size=64, accept_repaired=True)
    assert doc == load_document(pdf, tok, chunk_size=64, name="damaged.pdf")  # everything was recovered
    assert DocumentValidator(accept_repaired=True).validate(damaged) == (True, "ok")
