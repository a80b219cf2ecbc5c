"""Stage 1: make generators small: pruning, distillation, INT8 PTQ/QAT, sensitivity."""
from .distill import DistillConfig, distill  # noqa: F401
from .modconv import shared_weight_form  # noqa: F401
from .prune import PruneConfig, prune  # noqa: F401
from .quantize import QuantConfig, quantize, restore_quantized  # noqa: F401
from .restore import load_model  # noqa: F401
