"""world: a world in miniature, small enough to build and train on 2 CPU cores in under an hour.

Simple scenes (a coloured shape at a position) with captions, spoken by espeak-ng, and small models trained
on them with the project's own classes and training code: the offline default of the app, and the proof
that a spoken caption becomes a fitting picture. `python -m world.rebuild` rebuilds all of it.
"""
