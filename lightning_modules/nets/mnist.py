"""Plain nn.Modules of experiment B: AE encoder/decoder, latent GAN nets, digit classifiers."""
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class ConvEncoder(nn.Module):
    """image N×1×28×28 in [0,1] -> code N×code_dim (three stride-2 convs, 1→w→2w→2w channels; w = 16
    is the paper's encoder, a wider one is not from the paper)."""

    def __init__(self, code_dim: int = 32, width: int = 16):
        super().__init__()
        w = int(width)
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 3, stride=2, padding=1), nn.ReLU(),          # 14×14
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),      # 7×7
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),  # 4×4
            nn.Flatten(), nn.Linear(2 * w * 4 * 4, code_dim),
        )

    def forward(self, image_N1HW: torch.Tensor) -> torch.Tensor:
        return self.net(image_N1HW)


class ConvDecoder(nn.Module):
    """code N×code_dim -> logits N×1×28×28 (apply sigmoid for pixels in [0,1])."""

    def __init__(self, code_dim: int = 32):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(code_dim, 32 * 4 * 4), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),                    # 7×7
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),  # 14×14
            nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),              # 28×28
        )

    def forward(self, code_ND: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(code_ND).view(-1, 32, 4, 4))


def mlp(sizes, activation=nn.LeakyReLU, norm=None) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them; ``norm`` wraps each Linear."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(n_in, n_out)
        layers.append(norm(linear) if norm else linear)
        if i < len(sizes) - 2:
            layers.append(activation(0.2) if activation is nn.LeakyReLU else activation())
    return nn.Sequential(*layers)


class LatentGenerator(nn.Module):
    """z N×z_dim ~ N(0, I) -> AE code N×code_dim."""

    def __init__(self, z_dim: int = 5, code_dim: int = 32, hidden: int = 256):
        super().__init__()
        self.net = mlp([z_dim, hidden, hidden, code_dim])

    def forward(self, z_NK: torch.Tensor) -> torch.Tensor:
        return self.net(z_NK)


class LatentDiscriminator(nn.Module):
    """AE code N×code_dim -> realism score N (spectral-normalised MLP, higher = more real)."""

    def __init__(self, code_dim: int = 32, hidden: int = 256):
        super().__init__()
        self.net = mlp([code_dim, hidden, hidden, 1], norm=spectral_norm)

    def forward(self, code_ND: torch.Tensor) -> torch.Tensor:
        return self.net(code_ND).squeeze(-1)


class SmallCNN(nn.Module):
    """The reward classifier: two conv blocks + MLP (LeNet-like), logits N×10."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.25, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * 7 * 7, 128), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(128, num_classes),
        )

    def forward(self, image_N1HW: torch.Tensor) -> torch.Tensor:
        return self.net(image_N1HW)


class JudgeCNN(nn.Module):
    """The independent judge: a deeper VGG-style net with batch norm, logits N×10."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.3, width: int = 32):
        super().__init__()

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                    nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                    nn.MaxPool2d(2)]

        self.net = nn.Sequential(
            *block(1, width), *block(width, 2 * width), *block(2 * width, 4 * width),  # 28 -> 14 -> 7 -> 3
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width * 3 * 3, 256), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(256, num_classes),
        )

    def forward(self, image_N1HW: torch.Tensor) -> torch.Tensor:
        return self.net(image_N1HW)


CLASSIFIER_NETS = {"small_cnn": SmallCNN, "judge_cnn": JudgeCNN}
