"""Train a digit classifier and save it, with its metadata, where the server loads it from.

    python train_mnist.py [--model cnn|dense] [--data DIR] [--epochs N] [--out PATH] [--limit N]
                          [--min-accuracy A]

The recipes and the training are mnist_service.training's; ``--help`` lists every option.
"""

import sys

from mnist_service.training import main

if __name__ == "__main__":
    sys.exit(main())
