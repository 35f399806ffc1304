"""Training and evaluation of the emotion classifiers (model iterations 1-4) on FER2013."""
