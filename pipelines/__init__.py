"""User jobs wired from the avatar stages: say, train-person, train-audio2expr, batch, evaluate."""
