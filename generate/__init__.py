"""generate: images from sound with Stable Diffusion 2.1 (`AudioToImagePipeline`), its command line
(`python -m generate`), and which models a run uses (`generate.model_sets`, shared with the app and evaluation).

Names are imported lazily so that `import generate.model_sets` does not pay for loading diffusers.
"""

import logging

# torchvision is left out on purpose (PyPI's build does not load beside the pinned torch), and transformers then
# uses the PIL image processors, as it says on every start. Only that one notice is held back.
logging.getLogger("transformers.utils.import_utils").addFilter(lambda record: "requires torchvision" not in record.getMessage())

__all__ = ["AudioToImagePipeline", "AudioToImagePipelineOutput", "resolve_device_and_dtype"]


def __getattr__(name):
    if name in __all__:
        from generate import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'generate' has no attribute {name!r}")
