"Results with NaN or Inf in them survive the JSON round trip that 00_models promises."
import math

from tttlab.models import LearningMetrics


def test_nan_and_inf_losses_round_trip():
    m = LearningMetrics(loss_history=[2.0, math.nan, math.inf, -math.inf], initial_loss=2.0, final_loss=math.nan,
                        tokens=10, seconds=2.0, skipped_updates=1)
    back = LearningMetrics.model_validate_json(m.model_dump_json())
    assert back.loss_history[0] == 2.0 and math.isnan(back.loss_history[1])
    assert back.loss_history[2:] == [math.inf, -math.inf]
    assert math.isnan(back.final_loss) and back.model_dump(exclude={"loss_history", "final_loss"}) == m.model_dump(
        exclude={"loss_history", "final_loss"})
