"""Synthetic data sets drawn from a seed: ``speech`` (1D: is someone speaking?), ``clips`` (3D: which way does a
shape move?) and ``shapes`` (2D colour images for AlexNet: which figure, in which colours?)."""
from __future__ import annotations

import numpy as np

from numconv.data.dataset import Dataset, _balanced_labels, _check_sizes, _synthetic_split

__all__ = ["speech", "clips", "shapes", "SPEECH_SAMPLE_RATE", "CLIP_DIRECTIONS", "SHAPE_FIGURES", "SHAPE_PALETTES",
           "SHAPE_CLASSES"]


SPEECH_SAMPLE_RATE = 8000  # Hz


def _syllable_envelope(length: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Amplitude envelope (length,) in [0, 1]: one to three raised-cosine syllables of 80–300 ms."""
    envelope = np.zeros(length)
    time = np.arange(length)
    for _ in range(rng.integers(1, 4)):
        # a short signal holds at most one whole syllable
        duration = min(rng.uniform(0.08, 0.30) * rate, length)
        start = rng.uniform(-0.2 * duration, length - 0.8 * duration)
        phase = (time - start) / duration
        inside = (phase >= 0) & (phase <= 1)
        envelope[inside] = np.maximum(envelope[inside], np.sin(np.pi * phase[inside]) ** 0.7)
    return envelope


def _resonator_response(frequencies: np.ndarray, centre: float, bandwidth: float, rate: float) -> np.ndarray:
    """Frequency response of a two-pole digital resonator (Klatt's formant filter), unit gain at 0 Hz."""
    radius = np.exp(-np.pi * bandwidth / rate)
    theta = 2 * np.pi * centre / rate
    z_inv = np.exp(-2j * np.pi * frequencies / rate)
    denominator = 1 - 2 * radius * np.cos(theta) * z_inv + radius ** 2 * z_inv ** 2
    return (1 - 2 * radius * np.cos(theta) + radius ** 2) / denominator


def _voiced_signal(length: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A vowel-like clip (length,): glottal pulses at 80–250 Hz through 2–3 formants, syllable envelope."""
    pitch = rng.uniform(80.0, 250.0)
    # Intonation: a slow glide of up to ±6 % and a little vibrato, as in running speech.
    seconds = np.arange(length) / rate
    glide = rng.uniform(-0.06, 0.06) * seconds / seconds[-1]
    vibrato = 0.01 * np.sin(2 * np.pi * rng.uniform(3, 7) * seconds + rng.uniform(0, 2 * np.pi))
    cycles = np.cumsum(pitch * (1 + glide + vibrato) / rate) + rng.uniform(0, 1)
    pulses = np.diff(np.floor(cycles), prepend=np.floor(cycles[0])).astype(float)

    # Filter in the frequency domain, zero-padded to twice the length so that nothing wraps around.
    size = 2 * length
    frequencies = np.fft.rfftfreq(size, d=1.0 / rate)
    # Glottal source (−12 dB/octave above ~100 Hz) times lip radiation (+6 dB/octave).
    response = (1j * frequencies / rate) / (1 + 1j * frequencies / 100.0) ** 2
    formant_ranges = ((250.0, 900.0), (800.0, 2300.0), (2200.0, 3300.0))
    for centre_range in formant_ranges[:rng.integers(2, 4)]:
        response = response * _resonator_response(frequencies, rng.uniform(*centre_range),
                                                   rng.uniform(60.0, 200.0), rate)
    voiced = np.fft.irfft(np.fft.rfft(pulses, size) * response, size)[:length]
    voiced = voiced * _syllable_envelope(length, rate, rng)
    return voiced / (np.abs(voiced).max() + 1e-12)


def _coloured_noise(length: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Noise (length,): white, pink, brown or band-pass, sometimes in bursts, peak-normalised."""
    size = 2 * length
    frequencies = np.fft.rfftfreq(size, d=1.0 / rate)
    spectrum = np.fft.rfft(rng.standard_normal(size))
    kind = rng.integers(4)
    if kind == 1:  # pink: power ∝ 1/f
        spectrum = spectrum / np.sqrt(np.maximum(frequencies, 20.0))
    elif kind == 2:  # brown: power ∝ 1/f²
        spectrum = spectrum / np.maximum(frequencies, 20.0)
    elif kind == 3:  # band-pass between two random frequencies
        low = rng.uniform(100.0, 2500.0)
        high = low * rng.uniform(1.3, 3.0)
        spectrum = spectrum * ((frequencies >= low) & (frequencies <= high))
    noise = np.fft.irfft(spectrum, size)[:length]
    if rng.random() < 0.5:
        # Bursts shaped like syllables, so loudness alone cannot tell the classes apart.
        noise = noise * _syllable_envelope(length, rate, rng)
    return noise / (np.abs(noise).max() + 1e-12)


def _steady_tone(length: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """One or two steady sinusoids (length,) between 300 and 3,000 Hz (a hum, a dial tone), peak 1."""
    seconds = np.arange(length) / rate
    tone = np.zeros(length)
    for _ in range(rng.integers(1, 3)):
        tone += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(300.0, 3000.0) * seconds
                                               + rng.uniform(0, 2 * np.pi))
    return tone / np.abs(tone).max()


def _speech_part(count: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` clips (count, 1, length) float32 at 8 kHz with labels (count,): 1 = speaking."""
    labels = _balanced_labels(count, 2, rng)
    signals = np.empty((count, 1, length), dtype=np.float32)
    for i, label in enumerate(labels):
        if label == 1:
            signal = _voiced_signal(length, SPEECH_SAMPLE_RATE, rng)
        elif rng.random() < 0.6:
            signal = _coloured_noise(length, SPEECH_SAMPLE_RATE, rng)
        else:
            signal = _steady_tone(length, SPEECH_SAMPLE_RATE, rng)
        # A faint noise floor (signal-to-noise 15–40 dB) and a random level for every clip.
        floor = 10 ** (-rng.uniform(15, 40) / 20) * np.sqrt(np.mean(signal ** 2))
        signal = signal + floor * rng.standard_normal(length)
        peak = np.abs(signal).max()
        signals[i, 0] = rng.uniform(0.2, 1.0) * signal / (peak if peak > 0 else 1.0)
    return signals, labels


def speech(n_train: int = 1200, n_test: int = 300, length: int = 4000,
           seed: int = 0) -> tuple[Dataset, Dataset]:
    """Synthetic "is someone speaking" clips sampled at 8 kHz (``SPEECH_SAMPLE_RATE``).

    Class 1 (speaking): a glottal pulse train at a random pitch of 80–250 Hz with a slight glide and vibrato,
    shaped by the source/radiation tilt and 2–3 formant resonances (F1 250–900 Hz, F2 800–2,300 Hz,
    F3 2,200–3,300 Hz, bandwidths 60–200 Hz), under an envelope of one to three syllables.
    Class 0 (not speaking): white, pink, brown or band-pass noise, steady or in bursts (60 %), or one or two
    steady tones of 300–3,000 Hz (40 %). Every clip gets a faint noise floor and a random level.

    Classes are balanced (exactly half each when the count is even). The training and test parts come from
    two independent streams spawned from ``np.random.SeedSequence(seed)``, so the test part does not change
    with ``n_train``. Inputs are standardised with the training part's mean and std. ``length`` is at least
    200 samples (two periods of the lowest pitch).

    Returns (train, test): inputs float32 (n_train, 1, length) and (n_test, 1, length), targets int64,
    2 classes.
    """
    _check_sizes(n_train=n_train, n_test=n_test, length=length)
    if length < 200:
        raise ValueError(f"length must be at least 200 samples (two periods at 80 Hz), got {length}")
    return _synthetic_split(lambda count, rng: _speech_part(count, length, rng), n_train, n_test, seed, 2, "speech")


# Class index → (rows, columns) moved per frame direction; rows grow downwards.
CLIP_DIRECTIONS = {0: ("left", (0, -1)), 1: ("right", (0, 1)), 2: ("up", (-1, 0)), 3: ("down", (1, 0))}


def _shape_mask(kind: int, side: int) -> np.ndarray:
    """A (side, side) boolean mask: 0 filled square, 1 disc, 2 plus sign, 3 hollow square."""
    centre = (side - 1) / 2
    rows, cols = np.mgrid[0:side, 0:side]
    if kind == 0:
        return np.ones((side, side), dtype=bool)
    if kind == 1:
        return (rows - centre) ** 2 + (cols - centre) ** 2 <= (side / 2) ** 2 + 0.25
    if kind == 2:
        return (np.abs(rows - centre) < 1) | (np.abs(cols - centre) < 1)
    mask = np.ones((side, side), dtype=bool)
    mask[1:-1, 1:-1] = False
    return mask


def _clips_part(count: int, frames: int, size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` clips (count, 1, frames, size, size) float32 with direction labels (count,)."""
    labels = _balanced_labels(count, 4, rng)
    videos = np.empty((count, 1, frames, size, size), dtype=np.float32)
    for i, label in enumerate(labels):
        step = np.array(CLIP_DIRECTIONS[int(label)][1])
        # Speed and shape size chosen so the whole path stays inside the frame.
        speed = int(rng.integers(1, (size - 3) // (frames - 1) + 1))
        travel = speed * (frames - 1)
        side = int(rng.integers(3, min(6, size - travel) + 1))
        mask = _shape_mask(int(rng.integers(4)), side)
        start = np.empty(2, dtype=int)
        for axis in range(2):
            if step[axis] == 0:
                start[axis] = rng.integers(0, size - side + 1)
            else:
                low = travel if step[axis] < 0 else 0
                start[axis] = rng.integers(low, size - side - (travel if step[axis] > 0 else 0) + 1)
        brightness = rng.uniform(0.6, 1.0)
        video = rng.normal(0.0, 0.05, size=(frames, size, size))
        for t in range(frames):
            top, left = start + step * speed * t
            video[t, top:top + side, left:left + side] += brightness * mask
        videos[i, 0] = video
    return videos, labels


def clips(n_train: int = 800, n_test: int = 200, frames: int = 8, size: int = 16,
          seed: int = 0) -> tuple[Dataset, Dataset]:
    """Synthetic videos of one shape (square, disc, plus or hollow square, 3–6 px) moving in a straight line.

    The class is the direction of motion: 0 left, 1 right, 2 up, 3 down (``CLIP_DIRECTIONS``); the shape,
    its size, brightness (0.6–1.0), speed (≥ 1 px per frame) and start are random, the shape stays wholly in
    view, and every pixel carries Gaussian noise (σ = 0.05). Classes are balanced. Training and test parts
    come from two independent streams spawned from ``np.random.SeedSequence(seed)``. Inputs are
    standardised with the training part's mean and std.

    Returns (train, test): inputs float32 (n, 1, frames, size, size), targets int64, 4 classes.
    """
    _check_sizes(n_train=n_train, n_test=n_test, frames=frames, size=size)
    if frames < 2:
        raise ValueError(f"frames must be at least 2 to show motion, got {frames}")
    if size < frames + 2:
        # The smallest shape (3 px) moving 1 px per frame must stay in view.
        raise ValueError(f"size must be at least frames + 2 = {frames + 2} pixels to fit the motion, "
                         f"got {size}")
    return _synthetic_split(lambda count, rng: _clips_part(count, frames, size, rng), n_train, n_test, seed, 4,
                            "clips")


SHAPE_FIGURES = ("disc", "square", "triangle", "cross", "ring")


#: hue ranges (degrees) of the figures' two colour families
SHAPE_PALETTES = {"warm": (-25.0, 55.0), "cool": (165.0, 250.0)}


#: class index → name: the figure and its colour family (class = figure index * 2 + palette index)
SHAPE_CLASSES = tuple(f"{palette} {figure}" for figure in SHAPE_FIGURES for palette in SHAPE_PALETTES)


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """One colour as (3,) RGB in [0, 1]; ``hue`` in degrees."""
    sector = (hue % 360.0) / 60.0
    chroma = value * saturation
    second = chroma * (1 - abs(sector % 2 - 1))
    order = [(chroma, second, 0), (second, chroma, 0), (0, chroma, second), (0, second, chroma),
             (second, 0, chroma), (chroma, 0, second)][int(sector) % 6]
    return np.array(order) + (value - chroma)


def _smooth_noise(rng: np.random.Generator, channels: int, cells: int, size: int) -> np.ndarray:
    """(channels, size, size) noise varying over about ``cells`` cells per side: a coarse Gaussian grid,
    bilinearly interpolated."""
    grid = rng.normal(size=(channels, cells + 1, cells + 1))
    position = np.linspace(0, cells, size)
    low = np.minimum(position.astype(int), cells - 1)
    frac = position - low
    rows = grid[:, low] * (1 - frac)[:, None] + grid[:, low + 1] * frac[:, None]
    return rows[:, :, low] * (1 - frac) + rows[:, :, low + 1] * frac


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A muted, textured background (3, size, size): a random grey level, soft colour blotches and oriented
    stripes of a random colour, frequency and angle."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    angle, frequency = rng.uniform(0, np.pi), rng.uniform(3, 12)
    stripes = np.sin(2 * np.pi * frequency * (rows * np.cos(angle) + cols * np.sin(angle)) + rng.uniform(0, 6.3))
    stripe_colour = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.1, 0.5), 1.0)
    background = (rng.uniform(0.25, 0.65) + 0.08 * _smooth_noise(rng, 3, 4, size)
                  + rng.uniform(0.03, 0.12) * stripe_colour[:, None, None] * stripes)
    return background


def _figure_mask(figure: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) boolean mask of figure ``figure`` (``SHAPE_FIGURES``) at a random place, size and angle,
    wholly inside the image."""
    radius = rng.uniform(0.16, 0.3) * size
    centre = rng.uniform(radius + 1, size - radius - 1, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:size, 0:size]
    y, x = (rows - centre[0]) / radius, (cols - centre[1]) / radius
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    name = SHAPE_FIGURES[figure]
    if name == "disc":
        return u * u + v * v <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75
    if name == "triangle":  # equilateral, circumradius 1
        return (v >= -0.5) & (v <= 1.0 - np.sqrt(3.0) * np.abs(u))
    if name == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    distance = np.sqrt(u * u + v * v)
    return (distance >= 0.55) & (distance <= 1.0)


def _shapes_part(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (count, 3, size, size) float32 with their class labels (count,)."""
    labels = _balanced_labels(count, len(SHAPE_CLASSES), rng)
    images = np.empty((count, 3, size, size), dtype=np.float32)
    palettes = list(SHAPE_PALETTES.values())
    for i, label in enumerate(labels):
        figure, palette = divmod(int(label), len(palettes))
        image = _texture(size, rng)
        mask = _figure_mask(figure, size, rng)
        colour = _hsv_to_rgb(rng.uniform(*palettes[palette]), rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0))
        # light from one side: a gentle brightness gradient across the figure
        shade = 1.0 + 0.15 * _smooth_noise(rng, 1, 1, size)[0]
        image[:, mask] = (colour[:, None] * shade[mask])
        images[i] = image + rng.normal(0.0, 0.02, size=image.shape)
    return images, labels


def shapes(n_train: int = 400, n_test: int = 100, size: int = 227, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Synthetic colour images for AlexNet: one figure (disc, square, triangle, cross or ring) at a random
    place, size (radius 16–30% of the side) and angle, in a warm (reds to yellows) or cool (cyans to blues) colour,
    on a textured background of muted blotches and stripes, with pixel noise (σ = 0.02).

    The class is the figure and its colour family (``SHAPE_CLASSES``: 10 classes, balanced), so a network must
    see both edges and colours. Training and test parts come from two independent streams spawned from
    ``np.random.SeedSequence(seed)``; inputs are standardised per channel with the training part's statistics.

    Returns (train, test): inputs float32 (n, 3, size, size), targets int64, 10 classes.
    """
    _check_sizes(n_train=n_train, n_test=n_test, size=size)
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels to draw a figure, got {size}")
    return _synthetic_split(lambda count, rng: _shapes_part(count, size, rng), n_train, n_test, seed,
                            len(SHAPE_CLASSES), "shapes", per_channel=True)
