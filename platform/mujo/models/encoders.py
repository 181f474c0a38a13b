"""Per-modality encoders of the paper: text 1 FC layer, video 2 FC layers, MM-Fit's convolutional encoders for
pose and accelerometer.

MM-Fit's encoders (its repository's auto-encoders) are three convolution blocks, channels 3 -> 9 -> 15 -> 24, ReLU and
max-pool 2 after each, kernel 11, padding (k-1)/2, groups [3, 3, 1]: ``Conv1d`` with stride 2 for one 3-axis
sensor, ``Conv2d`` on (3 coordinates, frames, joints) with stride (2, 1) for the skeleton. MM-Fit used 5-s windows;
ours are 2 s at 50 Hz, so the flattened sizes are derived here from the window shape, not copied.

The convolutions are *computed* in an equivalent, faster form than the ``nn.Conv1d``/``nn.Conv2d`` modules that hold
their parameters (the modules stay, so the state dict, old checkpoints and classifier artefacts are unchanged, and
``reference_forward`` still runs them as written). PyTorch's grouped 11x11 convolutions on tensors this small are
dominated by per-call overhead and the grouped slow path, not by arithmetic:

- *joint-folded*: a kernel 11 with padding 5 and stride 1 across the joints is a fixed banded (Toeplitz) linear map
  from the input joints to the output joints, so a ``Conv2d`` over (frames, joints) equals a ``Conv1d`` over frames
  whose channels are (channel, joint) pairs and whose weight is the banded expansion of the 2-D kernel. The pose
  encoder's first two layers run this way (one dense, well-vectorised 1-D convolution instead of a grouped 2-D one).
- *dense*: when a layer's whole input is small (the pose encoder's last layer, 15 x 6 x 4 values; each
  accelerometer layer), the convolution is one matrix per group, built from the kernel by index, applied as a
  (batched) matrix product; padding zeros are never multiplied. Both wrists' accelerometer encoders run as one
  set of grouped matrices.

Both expansions are built from the parameters at every call with gathers (cheap next to the convolution), so
gradients reach the original parameters exactly; results equal the reference within float32 rounding (summation
order differs). ``benchmarks/encoder_speed.py`` measures both forms; the choice of form per layer is its result.
Everything is device-agnostic (index tensors are non-persistent buffers that follow ``.to(device)``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mujo.schema import NUM_JOINTS, WINDOW

MMFIT_CHANNELS = (9, 15, 24)
MMFIT_GROUPS = (3, 3, 1)
MMFIT_KERNEL = 11
MMFIT_PAD = (MMFIT_KERNEL - 1) // 2
MMFIT_STRIDE = 2  # along frames; 1 across joints
POSE_FORMS = ("folded", "folded", "dense")  # per pose layer, measured fastest (benchmarks/encoder_speed.py)


def activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU}[name]()


class TextEncoder(nn.Module):
    """One fully connected layer over the sentence embedding."""

    def __init__(self, in_dim: int, hidden: int, act: str = "relu") -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), activation(act))
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VideoEncoder(nn.Module):
    """Two fully connected layers over the (window-pooled) video feature vector."""

    def __init__(self, in_dim: int, hidden: int, act: str = "relu") -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), activation(act), nn.Linear(hidden, hidden), activation(act))
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---- equivalent forms of a convolution ---------------------------------------------------------------------------

def conv_out_len(n: int, kernel: int = MMFIT_KERNEL, stride: int = MMFIT_STRIDE, pad: int = MMFIT_PAD) -> int:
    return (n + 2 * pad - kernel) // stride + 1


def band_index(n_in: int, n_out: int, kernel: int, stride: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For a 1-D convolution (cross-correlation) of length ``n_in``: the kernel tap that joins output ``o`` to input
    ``i`` (``k = i - stride*o + pad``, clamped) and whether that tap exists, both ``(n_out, n_in)``."""
    o = torch.arange(n_out).view(-1, 1)
    i = torch.arange(n_in).view(1, -1)
    k = i - stride * o + pad
    valid = (k >= 0) & (k < kernel)
    return k.clamp(0, kernel - 1), valid


def joint_folded_weight(weight: torch.Tensor, tap: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """A Conv2d weight ``(C_out, C_in/g, kT, kJ)`` (stride 1 across joints) as the Conv1d weight over frames with
    (channel, joint) channels, ``(C_out*J, C_in/g*J, kT)``: output channel ``co*J + jo``, input ``ci*J + ji``, the
    same groups. ``tap``/``valid`` from :func:`band_index` over the joints."""
    co, cig, kt, _ = weight.shape
    j_out, j_in = tap.shape
    w = weight[..., tap] * valid.to(weight.dtype)  # (co, cig, kt, jo, ji)
    return w.permute(0, 3, 1, 4, 2).reshape(co * j_out, cig * j_in, kt)


def dense_conv_matrix(weight: torch.Tensor, groups: int, t_band: tuple[torch.Tensor, torch.Tensor],
                      j_band: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """A convolution weight ``(C_out, C_in/g, kT, kJ)`` as one matrix per group, ``(g, C_out/g*To*Jo,
    C_in/g*Ji*Ti)``: rows in (channel, frame, joint) order, columns in (channel, joint, frame) order. A 1-D
    convolution is the case kJ = J = 1."""
    co, cig, _, _ = weight.shape
    (t_tap, t_valid), (j_tap, j_valid) = t_band, j_band
    t_out, t_in = t_tap.shape
    j_out, j_in = j_tap.shape
    m = weight[:, :, t_tap][..., j_tap]  # (co, cig, to, ti, jo, ji)
    m = m * (t_valid[:, :, None, None] & j_valid[None, None]).to(weight.dtype)
    m = m.permute(0, 2, 4, 1, 5, 3)  # (co, to, jo, cig, ji, ti)
    return m.reshape(groups, (co // groups) * t_out * j_out, cig * j_in * t_in)


def apply_dense(h: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor, positions: int, groups: int) -> torch.Tensor:
    """``h`` (B, g*in) through the per-group matrices ``(g, out, in)`` -> (B, g*out), plus each channel's bias at
    its ``positions`` output positions. ``groups`` is passed as a Python int (a traced export keeps it constant)."""
    b, g = h.shape[0], groups
    if g == 1:
        out = F.linear(h, matrix[0])
    else:
        out = torch.bmm(h.view(b, g, -1).transpose(0, 1), matrix.transpose(1, 2)).transpose(0, 1).reshape(b, -1)
    return out + bias.repeat_interleave(positions)


def _register_band(module: nn.Module, name: str, band: tuple[torch.Tensor, torch.Tensor]) -> None:
    module.register_buffer(f"{name}_tap", band[0], persistent=False)  # not in the state dict: derived from shapes
    module.register_buffer(f"{name}_valid", band[1], persistent=False)


def _band(module: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    return getattr(module, f"{name}_tap"), getattr(module, f"{name}_valid")


_ONE = (torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool))  # the trivial band of a 1-D conv


class MMFitSensorEncoder(nn.Module):
    """MM-Fit's 1-D convolutional encoder for one 3-axis sensor; input (B, 3, T), output (B, out_dim)."""

    def __init__(self, length: int = WINDOW, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out, groups in zip(MMFIT_CHANNELS, MMFIT_GROUPS):
            layers += [nn.Conv1d(c_in, c_out, MMFIT_KERNEL, stride=MMFIT_STRIDE, padding=MMFIT_PAD, groups=groups),
                       nn.ReLU(), nn.MaxPool1d(2)]
            c_in = c_out
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.length, self.in_channels = length, in_channels
        t = length
        self.out_sizes: list[int] = []  # each layer's output length, as Python ints (constants of a traced graph)
        for i in range(len(MMFIT_CHANNELS)):
            _register_band(self, f"t{i}", band_index(t, conv_out_len(t), MMFIT_KERNEL, MMFIT_STRIDE, MMFIT_PAD))
            self.out_sizes.append(conv_out_len(t))
            t = conv_out_len(t) // 2
        self.register_buffer("j_tap", _ONE[0].clone(), persistent=False)
        self.register_buffer("j_valid", _ONE[1].clone(), persistent=False)
        with torch.no_grad():
            self.out_dim = int(self.net(torch.zeros(1, in_channels, length)).shape[1])

    @property
    def convs(self) -> list[nn.Conv1d]:
        return [m for m in self.net if isinstance(m, nn.Conv1d)]

    def layer_matrices(self) -> list[tuple[torch.Tensor, torch.Tensor, int, int]]:
        """Per layer: the dense per-group matrices, the bias, the output length and the groups (see
        :func:`dense_conv_matrix`)."""
        out = []
        for i, conv in enumerate(self.convs):
            t_band = _band(self, f"t{i}")
            out.append((dense_conv_matrix(conv.weight.unsqueeze(-1), conv.groups, t_band, _band(self, "j")),
                        conv.bias, self.out_sizes[i], conv.groups))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _other_shape(x, (self.in_channels, self.length)):
            return self.reference_forward(x)
        return dense_sensor_forward(x, self.layer_matrices())

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layers as written (``nn.Conv1d``): the definition the fast form is tested against."""
        return self.net(x)


def _other_shape(x: torch.Tensor, shape: tuple[int, ...]) -> bool:
    """Whether ``x`` (B, ...) is not of the shape the fast form was built for (then the layers as written run).
    A traced or exported graph is built for the model's own window: no check there (it would be a constant)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    return tuple(x.shape[1:]) != shape


def dense_sensor_forward(x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor, int, int]]) -> torch.Tensor:
    """(B, C, T) through dense layers (matrices, bias, output length, groups), each followed by ReLU and max-pool
    2."""
    b = x.shape[0]
    h = x.reshape(b, -1)
    for matrix, bias, t_out, groups in layers:
        h = apply_dense(h, matrix, bias, t_out, groups).view(b, -1, t_out)
        h = F.max_pool1d(F.relu(h), 2).reshape(b, -1)
    return h


class AccEncoder(nn.Module):
    """Both wrists' accelerometers: one MM-Fit sensor encoder per wrist, features concatenated.

    Input (B, T, 6) = [left xyz, right xyz]. A sample without one wrist carries zeros in its channels. Both wrists
    run as one set of grouped dense matrices (the left's groups, then the right's): the same numbers as running
    ``left`` and ``right`` apart.
    """

    def __init__(self, length: int = WINDOW) -> None:
        super().__init__()
        self.left = MMFitSensorEncoder(length)
        self.right = MMFitSensorEncoder(length)
        self.out_dim = self.left.out_dim + self.right.out_dim
        self.length = length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _other_shape(x, (self.length, 6)):
            return self.reference_forward(x)
        layers = [(torch.cat([ml, mr]), torch.cat([bl, br]), t, 2 * g) for (ml, bl, t, g), (mr, br, _, _)
                  in zip(self.left.layer_matrices(), self.right.layer_matrices())]
        return dense_sensor_forward(x.transpose(1, 2), layers)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2).contiguous()  # (B, 6, T)
        return torch.cat([self.left.reference_forward(x[:, :3]), self.right.reference_forward(x[:, 3:])], dim=1)


class PoseEncoder(nn.Module):
    """MM-Fit's 2-D convolutional skeleton encoder; input (B, T, J, 3), convolved as (B, 3, T, J).

    Computed with the first two layers joint-folded and the last dense (:data:`POSE_FORMS`); the activations are
    held as (B, C, J, T) between layers, which max-pool 2 x 2 treats exactly as (B, C, T, J)."""

    def __init__(self, length: int = WINDOW, joints: int = NUM_JOINTS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out, groups in zip(MMFIT_CHANNELS, MMFIT_GROUPS):
            layers += [nn.Conv2d(c_in, c_out, MMFIT_KERNEL, stride=(MMFIT_STRIDE, 1), padding=MMFIT_PAD,
                                 groups=groups), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.length, self.joints = length, joints
        t, j = length, joints
        self.out_sizes: list[tuple[int, int]] = []  # each layer's (frames, joints) out, as Python ints
        for i in range(len(MMFIT_CHANNELS)):
            _register_band(self, f"j{i}", band_index(j, j, MMFIT_KERNEL, 1, MMFIT_PAD))
            _register_band(self, f"t{i}", band_index(t, conv_out_len(t), MMFIT_KERNEL, MMFIT_STRIDE, MMFIT_PAD))
            self.out_sizes.append((conv_out_len(t), j))
            t, j = conv_out_len(t) // 2, j // 2
        with torch.no_grad():
            self.out_dim = int(self.net(torch.zeros(1, 3, length, joints)).shape[1])

    @property
    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.net if isinstance(m, nn.Conv2d)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _other_shape(x, (self.length, self.joints, 3)):
            return self.reference_forward(x)
        b = x.shape[0]
        h = x.permute(0, 3, 2, 1)  # (B, 3, J, T)
        for i, (conv, form) in enumerate(zip(self.convs, POSE_FORMS)):
            c, j = h.shape[1], h.shape[2]
            if form == "folded":
                w = joint_folded_weight(conv.weight, *_band(self, f"j{i}"))
                h = F.conv1d(h.reshape(b, c * j, -1), w, conv.bias.repeat_interleave(j), stride=MMFIT_STRIDE,
                             padding=MMFIT_PAD, groups=conv.groups)
                h = F.max_pool2d(F.relu(h.view(b, conv.out_channels, j, -1)), 2)  # (B, C, J, T)
            else:  # dense: rows come out in (channel, frame, joint) order
                t_band, j_band = _band(self, f"t{i}"), _band(self, f"j{i}")
                t_out, j_out = self.out_sizes[i]
                m = dense_conv_matrix(conv.weight, conv.groups, t_band, j_band)
                h = apply_dense(h.reshape(b, -1), m, conv.bias, t_out * j_out, conv.groups).view(b, -1, t_out, j_out)
                h = F.max_pool2d(F.relu(h), 2).transpose(2, 3)  # back to (B, C, J, T)
        return h.transpose(2, 3).flatten(1)  # MM-Fit's flatten order: (C, T, J)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layers as written (``nn.Conv2d`` on (B, 3, T, J)): the definition the fast form is tested against."""
        return self.net(x.permute(0, 3, 1, 2).contiguous())


def projection(in_dim: int, hidden: int, out_dim: int, layers: int, act: str, dropout: float) -> nn.Sequential:
    """The projection head into the joint space: ``layers`` linear layers (the paper uses 2)."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden), activation(act), nn.Dropout(dropout)]
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)
