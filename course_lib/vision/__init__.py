"""Image classification: safe decoding, Base64, the classifier bundle (`Classifier.classify`), backends, samples."""

from course_lib.vision.classifier import (
    MODEL_ENV,
    Backend,
    Classifier,
    WeightsUnavailableError,
    benchmark_resnet50,
    download_weights,
    format_answer,
    imagenet_weights_path,
    load_classifier,
    resolve_model_name,
    sample_images,
    top_k,
)
from course_lib.vision.decoding import (
    ALLOWED_FORMATS,
    MAX_IMAGE_BYTES,
    MAX_PIXELS,
    ImageError,
    decode_base64,
    decode_image,
    encode_base64,
)

__all__ = [
    "ALLOWED_FORMATS",
    "MAX_IMAGE_BYTES",
    "MAX_PIXELS",
    "MODEL_ENV",
    "Backend",
    "Classifier",
    "ImageError",
    "WeightsUnavailableError",
    "benchmark_resnet50",
    "decode_base64",
    "decode_image",
    "download_weights",
    "encode_base64",
    "format_answer",
    "imagenet_weights_path",
    "load_classifier",
    "resolve_model_name",
    "sample_images",
    "top_k",
]
