"""world: a world in miniature, small enough to build and train from scratch on 2 CPU cores (4.2-4.6 hours, resumable).

Simple scenes (a coloured shape at a position) with captions, spoken by many voices of many speech engines through a
simulated microphone, and small models trained
on them with the project's own classes and training code: the offline default of the app, and the proof
that a spoken caption becomes a fitting picture. `python -m world.rebuild` rebuilds all of it.

Also the smallest made-up data: `world.synthetic_data`, an audiofolder of synthetic sounds and spoken captions to try
`align.train` on, spoken (like the world's espeak-ng voices) through `world.espeak`.
"""
