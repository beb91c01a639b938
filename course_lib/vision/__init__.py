"""Image classification helpers: safe decoding, Base64, the classifier bundle, backends, sample images."""

from course_lib.vision.classifier import (
    MODEL_ENV,
    Classifier,
    WeightsUnavailableError,
    benchmark_resnet50,
    download_weights,
    imagenet_weights_path,
    load_classifier,
    prediction,
    resolve_model_name,
    sample_images,
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
    "Classifier",
    "ImageError",
    "WeightsUnavailableError",
    "benchmark_resnet50",
    "decode_base64",
    "decode_image",
    "download_weights",
    "encode_base64",
    "imagenet_weights_path",
    "load_classifier",
    "prediction",
    "resolve_model_name",
    "sample_images",
]
