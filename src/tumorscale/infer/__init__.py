"""Prediction: sliding-window inference with mirror TTA, back onto the CT, post-processing."""

from tumorscale.infer.batch import predict_folder
from tumorscale.infer.postprocess import (
    LesionSizes,
    PostprocessOptions,
    PostprocessResult,
    keep_touching,
    lesion_sizes,
    postprocess_lesions,
)
from tumorscale.infer.predictor import CasePrediction, Predictor, resolve_device, tumor_organs
from tumorscale.infer.preprocess import (
    InputGridPrediction,
    PreparedInput,
    prepare_input,
    to_input_geometry,
    to_input_grid,
)
from tumorscale.infer.sliding_window import (
    mirror_combinations,
    sliding_window_inference,
    window_grid,
    window_starts,
)

__all__ = [
    "CasePrediction",
    "InputGridPrediction",
    "LesionSizes",
    "PostprocessOptions",
    "PostprocessResult",
    "Predictor",
    "PreparedInput",
    "keep_touching",
    "lesion_sizes",
    "mirror_combinations",
    "postprocess_lesions",
    "predict_folder",
    "prepare_input",
    "resolve_device",
    "sliding_window_inference",
    "to_input_geometry",
    "to_input_grid",
    "tumor_organs",
    "window_grid",
    "window_starts",
]
