"""Fashion-MNIST (Xiao et al. 2017): MNIST's IDX format and layout, Zalando's article images."""

import torchvision

from adrun.data.mnist import MNIST


class FashionMNIST(MNIST):
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    torchvision_class = torchvision.datasets.FashionMNIST
    url = "https://github.com/zalandoresearch/fashion-mnist"
