"""Small MLPs on the same backends: the model, its numpy reference, initializers, the training
loop and the data sets."""
