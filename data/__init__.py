"""Dataset code: MNIST digit sources, Moving MNIST generation, HDF5 readers."""
