"""generate: images from sound with Stable Diffusion 2.1 (`AudioToImagePipeline`), its command line
(`python -m generate`), and ranking of candidates (`generate.scoring`).

Names are imported lazily so that `import generate.scoring` does not pay for loading diffusers.
"""

__all__ = ["AudioToImagePipeline", "AudioToImagePipelineOutput", "resolve_device_and_dtype"]


def __getattr__(name):
    if name in __all__:
        from generate import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'generate' has no attribute {name!r}")
