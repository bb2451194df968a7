"The README is the index notebook as markdown: current, free of hidden cells, and opening with the two commands."
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_current_and_opens_with_the_commands(tmp_path):
    out = tmp_path / "README.md"
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--nbs", str(ROOT / "nbs"), "--readme", str(out)],
                   check=True, cwd=ROOT, timeout=120)
    text = out.read_text()
    assert text == (ROOT / "README.md").read_text(), "README.md is stale: run `make readme` and commit"
    assert "#|" not in text, "a notebook directive leaked into the README"
    first_code = text.index("```bash")
    assert text[first_code:].splitlines()[1].startswith("make demo") and text[first_code:].splitlines()[2].startswith("make test")
    assert text.index("# tttlab") < first_code < text.index("## ")
