"""`python -m world` is `python -m world.rebuild`: rebuild the world, retrain everything, ship and measure it."""

from world.rebuild import main

main()
