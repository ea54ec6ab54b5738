"""SenseQuant runtime configuration (released by shipshape as an artifact of kind `configs`)."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    # Strategies the engine trades, with their position sizing.
    strategies: tuple[str, ...] = ("intraday", "swing")
    intraday_max_position: float = 0.02  # fraction of capital per intraday trade
    swing_max_position: float = 0.05  # fraction of capital per swing trade
    intraday_confidence_threshold: float = 0.62
    swing_confidence_threshold: float = 0.58
    student_model_path: str = "data/models/student_model.pkl"
    feature_window_minutes: int = 30
    universe: tuple[str, ...] = field(default=("RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK"))


SETTINGS = Settings()
