"""Hutter-prize Wikipedia bytes (Graves 2016, section 3.5; docs/equations.md section 12 item 11).

The data is the raw bytes of enwik8 (XML and wiki markup included), one byte
per input step with the next byte as target. The file is split into train /
valid / test by byte position: [0, 90M), [90M, 95M), [95M, 100M) for enwik8.
Any other byte file (e.g. the test file enwik6) is split by the same
proportions with integer arithmetic: train = n * 90 // 100 bytes, valid =
n * 5 // 100 bytes and test = the rest (so the three splits always tile the
file; for 10^8 and 10^6 bytes the proportions are exact).

Training windows of `window + 1` consecutive bytes (500 + 1 in the paper) are
sampled at random positions; the model state is reset at the start of every
window. Evaluation walks a held-out split in consecutive non-overlapping
windows, so every predicted byte of the split is counted exactly once.

Files are memory-mapped (`np.memmap`, read only); only the bytes a batch
needs are read from disk.
"""

import dataclasses
import hashlib
import os
import shutil
import string
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tasks.data.batch import Batch, batch_stream_key, check_int

ENWIK8_SHA1 = "57b8363b814821dc9d47aa4d41f58733519076b2"
ENWIK8_SIZE = 10**8
ENWIK8_NAME = "enwik8"  # file name, and the name of the member of enwik8.zip
ENWIK8_URL = "http://mattmahoney.net/dc/enwik8.zip"  # the Hutter prize page's copy
ENWIK6_NAME = "enwik6"  # the first ENWIK6_SIZE bytes of enwik8: the CPU-sized LM's data
ENWIK6_SIZE = 10**6
FETCH_HINT = "python -m launch.fetch_data --dest=DIR fetches enwik8 and writes DIR/enwik6"
SPLITS = ("train", "valid", "test")
SPLIT_PERCENT = (90, 5, 5)  # train / valid / test share of the file
WINDOW = 500  # paper value: bytes per training sequence
NUM_SYMBOLS = 256  # one class per byte value

CHARACTER_CLASSES = ("space", "letter", "digit", "punctuation", "angle", "newline", "other")

_SHA1_CHUNK = 1 << 20


def _sha1(path: str) -> str:
  """Returns the hex SHA-1 of a file, read in chunks."""
  digest = hashlib.sha1()
  with open(path, "rb") as f:
    for chunk in _chunks(f):
      digest.update(chunk)
  return digest.hexdigest()


def _enwik8_mismatch(path: str) -> str | None:
  """How a file that claims to be enwik8 differs from the published size and SHA-1, or None."""
  size = os.path.getsize(path)
  if size != ENWIK8_SIZE:
    return f"{path!r} is named {ENWIK8_NAME} but has {size} bytes, expected {ENWIK8_SIZE}"
  actual = _sha1(path)
  if actual != ENWIK8_SHA1:
    return f"{path!r} has SHA-1 {actual}, expected {ENWIK8_SHA1} for {ENWIK8_NAME}"
  return None


def _check_enwik8(path: str) -> None:
  """Checks the size and SHA-1 of a file that claims to be enwik8.

  Raises:
    ValueError: If the size or the SHA-1 differs from the published values.
  """
  mismatch = _enwik8_mismatch(path)
  if mismatch:
    raise ValueError(
      f"{mismatch} (check_sha1=False, on the command line "
      "--config.task_options.check_sha1=False, skips the size and SHA-1 check)"
    )


def _write_atomically(path: str, chunks: Iterator[bytes]) -> None:
  """Writes ``chunks`` to ``path`` through a temporary file, so that no truncated file is left."""
  partial = path + f".partial-{os.getpid()}"
  try:
    with open(partial, "wb") as dst:
      for chunk in chunks:
        dst.write(chunk)
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def _chunks(src) -> Iterator[bytes]:
  """The bytes of a readable binary stream, a chunk at a time."""
  while chunk := src.read(_SHA1_CHUNK):
    yield chunk


def fetch_enwik8(dest: str, url: str = ENWIK8_URL) -> str:
  """Downloads enwik8.zip, checks enwik8 and writes enwik6, its first 10^6 bytes, beside it.

  ``dest/enwik8.zip`` is downloaded unless it is there already; its ``enwik8``
  member is extracted to ``dest/enwik8`` and checked against the published
  size and SHA-1 (a file that fails the check is removed, with the zip it came
  from, so that the next try downloads again); then ``dest/enwik6`` is
  written, the data of the text task's ``default`` config.

  Args:
    dest: The directory to write to (created if missing).
    url: Where enwik8.zip is (any URL ``urllib`` opens, ``file://`` included).

  Returns:
    The path of the checked ``enwik8``.

  Raises:
    ValueError: If the extracted enwik8 has another size or SHA-1 than the
      published one, or the zip has no ``enwik8`` member.
    OSError: If the download or a write fails (``urllib.error.URLError`` is one).
  """
  os.makedirs(dest, exist_ok=True)
  zip_path = os.path.join(dest, ENWIK8_NAME + ".zip")
  if not os.path.exists(zip_path):
    with urllib.request.urlopen(url) as src:
      _write_atomically(zip_path, _chunks(src))
  path = _extract_enwik8(zip_path)
  mismatch = _enwik8_mismatch(path)
  if mismatch:
    os.remove(path)
    os.remove(zip_path)
    raise ValueError(f"{mismatch}: {url} did not give the published enwik8 (both files removed)")
  with open(path, "rb") as src:
    _write_atomically(os.path.join(dest, ENWIK6_NAME), iter([src.read(ENWIK6_SIZE)]))
  return path


def _extract_enwik8(zip_path: str) -> str:
  """Extracts the `enwik8` member of a zip next to it, once.

  Returns:
    Path of the extracted file, `<dir of zip>/enwik8`.

  Raises:
    ValueError: If the zip has no `enwik8` member.
    PermissionError: If the file is not extracted yet and the directory of
      the zip is not writable.
  """
  directory = os.path.dirname(os.path.abspath(zip_path))
  target = os.path.join(directory, ENWIK8_NAME)
  with zipfile.ZipFile(zip_path) as archive:
    if ENWIK8_NAME not in archive.namelist():
      raise ValueError(
        f"zip file {zip_path!r} has no member named {ENWIK8_NAME!r}; members: {archive.namelist()[:10]}"
      )
    if os.path.exists(target):
      return target
    if not os.access(directory, os.W_OK):
      raise PermissionError(
        f"cannot extract {ENWIK8_NAME!r} from {zip_path!r}: directory {directory!r} is not "
        f"writable; extract it yourself (e.g. `unzip {zip_path} -d DIR`) and pass DIR/{ENWIK8_NAME}"
      )
    with archive.open(ENWIK8_NAME) as src:
      _write_atomically(target, _chunks(src))  # a crash never leaves a truncated enwik8
  return target


def load_bytes(path: str, check_sha1: bool = True) -> np.ndarray:
  """Memory-maps a byte file, or the `enwik8` member of `enwik8.zip`.

  A path ending in ".zip" must hold a member named `enwik8`; it is extracted
  once to `<dir of zip>/enwik8` (reused if already there) and that file is
  mapped. A file named `enwik8` (given directly or extracted) is checked
  against the published size (10^8 bytes) and SHA-1 unless `check_sha1` is
  False; the size check is part of that check, so `check_sha1=False` also
  accepts a smaller file named enwik8. Other files are not checked.

  Args:
    path: Path of a raw byte file or of a zip holding `enwik8`.
    check_sha1: Whether to check the size and SHA-1 of enwik8 (takes a few
      seconds on 100 MB).

  Returns:
    A read-only uint8 `np.memmap` of the whole file (not copied).

  Raises:
    FileNotFoundError: If `path` does not exist.
    IsADirectoryError: If `path` is a directory.
    ValueError: If the file is empty, the zip has no `enwik8` member, or the
      enwik8 size or SHA-1 check fails. The message names the path.
    PermissionError: If a zip must be extracted into a non-writable directory.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    raise IsADirectoryError(f"byte file {path!r} is a directory; give the path of a file in it")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"byte file {path!r} does not exist ({FETCH_HINT})")
  if path.endswith(".zip"):
    path = _extract_enwik8(path)
  if os.path.getsize(path) == 0:
    raise ValueError(f"byte file {path!r} is empty")
  if check_sha1 and os.path.basename(path) == ENWIK8_NAME:
    _check_enwik8(path)
  return np.memmap(path, dtype=np.uint8, mode="r")


def split_sizes(num_bytes: int) -> tuple[int, int, int]:
  """Returns the (train, valid, test) sizes of a file of `num_bytes` bytes.

  train = num_bytes * 90 // 100, valid = num_bytes * 5 // 100, test = the
  rest; for enwik8 this is exactly 90M / 5M / 5M.
  """
  train = num_bytes * SPLIT_PERCENT[0] // 100
  valid = num_bytes * SPLIT_PERCENT[1] // 100
  return train, valid, num_bytes - train - valid


def split_bytes(data: np.ndarray, split: str) -> np.ndarray:
  """Returns one split of a byte array as a view (no copy).

  Args:
    data: [N] uint8 bytes of the whole file.
    split: "train" (first 90%), "valid" (next 5%) or "test" (last 5%); see
      `split_sizes`.

  Returns:
    A view of `data` holding the split.

  Raises:
    ValueError: If `split` is unknown.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  train, valid, _ = split_sizes(len(data))
  bounds = {"train": (0, train), "valid": (train, train + valid), "test": (train + valid, len(data))}
  start, stop = bounds[split]
  return data[start:stop]


def sample_windows(
  data: np.ndarray | jax.Array, key: jax.Array, batch_size: int, window: int = WINDOW
) -> tuple[np.ndarray, np.ndarray] | tuple[jax.Array, jax.Array]:
  """Samples random windows of consecutive bytes for next-byte prediction.

  Starts are drawn uniformly from [0, len(data) - window - 1] with
  `jax.random.randint`. From a NumPy array (a memory-mapped file) the bytes are
  gathered on the host, so only the sampled bytes are read; from a JAX array
  (the split placed on the devices once) they are gathered there, also under
  `jax.jit`. Both give the same windows for the same key.

  Args:
    data: [N] uint8 bytes of one split.
    key: PRNG key.
    batch_size: Number of windows B.
    window: Steps per window T (500 in the paper).

  Returns:
    (inputs, targets), both [B, window] uint8, NumPy or JAX like `data`;
    targets[b, t] is the byte following inputs[b, t].

  Raises:
    ValueError: If an option is invalid or the split is shorter than
      window + 1 bytes.
  """
  check_int("batch_size", batch_size, 1)
  check_int("window", window, 1)
  if len(data) < window + 1:
    raise ValueError(f"split has {len(data)} bytes, fewer than window + 1 = {window + 1}")
  starts = jax.random.randint(key, (batch_size,), 0, len(data) - window)
  if isinstance(data, np.ndarray):
    starts = np.asarray(starts, dtype=np.int64)
    chunks = np.asarray(data[starts[:, None] + np.arange(window + 1)], dtype=np.uint8)
  else:
    chunks = data[starts[:, None] + jnp.arange(window + 1)]
  return chunks[:, :-1], chunks[:, 1:]


def eval_windows(
  data: np.ndarray, batch_size: int, window: int = WINDOW
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Walks a whole split in consecutive non-overlapping windows.

  Window i predicts targets data[i * window + 1 : (i + 1) * window + 1] from
  the preceding bytes; the state is reset per window, as in training. Batch j
  holds windows j * B .. j * B + B - 1 in rows. The last window and the last
  batch are padded with zeros and masked, so the masked targets of all
  batches, in order, are exactly data[1:] (len(data) - 1 targets). Padded
  targets are 0; padded inputs are 0 except the one following the last real
  input, which holds the split's last byte (it has no target to predict).

  Args:
    data: [N] uint8 bytes of one split, N >= 2.
    batch_size: Windows per batch B.
    window: Steps per window T.

  Yields:
    (inputs, targets, mask): [B, window] uint8, uint8 and bool arrays of a
    static shape; mask is True where the target is a real byte.

  Raises:
    ValueError: If an option is invalid or the split has fewer than 2 bytes.
  """
  check_int("batch_size", batch_size, 1)
  check_int("window", window, 1)
  if len(data) < 2:
    raise ValueError(f"split has {len(data)} bytes, need at least 2 to predict one")
  num_targets = len(data) - 1
  per_batch = batch_size * window
  for first in range(0, num_targets, per_batch):
    chunk = np.zeros(per_batch + 1, np.uint8)
    piece = data[first : first + per_batch + 1]
    chunk[: len(piece)] = piece
    valid = min(per_batch, num_targets - first)
    mask = (np.arange(per_batch) < valid).reshape(batch_size, window)
    yield chunk[:-1].reshape(batch_size, window), chunk[1:].reshape(batch_size, window), mask


def _class_table() -> np.ndarray:
  table = np.full(256, CHARACTER_CLASSES.index("other"), np.int32)
  table[ord(" ")] = CHARACTER_CLASSES.index("space")
  for c in string.ascii_letters:
    table[ord(c)] = CHARACTER_CLASSES.index("letter")
  for c in string.digits:
    table[ord(c)] = CHARACTER_CLASSES.index("digit")
  for c in string.punctuation:
    table[ord(c)] = CHARACTER_CLASSES.index("punctuation")
  table[[ord("<"), ord(">")]] = CHARACTER_CLASSES.index("angle")
  table[ord("\n")] = CHARACTER_CLASSES.index("newline")
  return table


_CLASS_TABLE = _class_table()


def character_class(byte_values: np.ndarray) -> np.ndarray:
  """Maps byte values to character classes, for ponder-by-class tables.

  Classes, as indices into `CHARACTER_CLASSES`: "space" (b" "), "letter"
  (ASCII a-z, A-Z), "digit" (0-9), "punctuation" (ASCII punctuation except
  < and >), "angle" (< or >), "newline" (b"\\n") and "other" (everything
  else: tabs, carriage returns, other control bytes and all non-ASCII bytes).

  Args:
    byte_values: Integer array of byte values in [0, 255], any shape.

  Returns:
    int32 array of the same shape with class indices.
  """
  return _CLASS_TABLE[np.asarray(byte_values, dtype=np.uint8)]


def check_options(options: Mapping[str, Any]) -> None:
  """Checks the ``text`` task options: ``path`` (a byte file), ``window`` and ``check_sha1``.

  Raises:
    FileNotFoundError: If the file does not exist.
    ValueError: For an unknown option, a bad window, a file that fails its
      checks (see `load_bytes`), or splits too short for one window.
  """
  known = ["check_sha1", "path", "window"]
  unknown = sorted(set(options) - set(known))
  if unknown:
    raise ValueError(f"unknown text options {unknown}; known: {known}")
  check_int("window", options["window"], 1)
  check_sha1 = options.get("check_sha1", True)
  if not isinstance(check_sha1, bool):
    raise ValueError(f"check_sha1 must be True or False, got {check_sha1!r}")
  data = load_bytes(options["path"], check_sha1=check_sha1)
  for split in ("train", "valid"):
    size = len(split_bytes(data, split))
    if size < options["window"] + 1:
      raise ValueError(f"the {split} split of {options['path']!r} has {size} bytes, fewer "
                       f"than window + 1 = {options['window'] + 1}")


def _as_batch(inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> Batch:
  """Byte windows (NumPy or JAX arrays) as a `Batch`: token inputs [B, T], targets [B, T, 1].

  The difficulty of a text batch is unused (0): per-character tables group
  by the class of each input byte instead (`character_class`).
  """
  return Batch(inputs=inputs.astype(np.int32), targets=targets.astype(np.int32)[..., None],
               input_mask=mask, target_mask=mask,
               difficulty=np.zeros(inputs.shape[0], np.int32))


@dataclasses.dataclass(frozen=True)
class WindowSampler:
  """``(train split, seed, step) -> Batch``: a step's random windows, pure and jittable.

  Attributes:
    window: bytes per window.
    batch_size: windows per batch.
  """

  window: int
  batch_size: int

  def __call__(self, data: np.ndarray | jax.Array, seed: int | jax.Array,
               step: int | jax.Array) -> Batch:
    inputs, targets = sample_windows(data, batch_stream_key(seed, step, "train"),
                                     self.batch_size, self.window)
    return _as_batch(inputs, targets, np.ones(inputs.shape, bool))


@dataclasses.dataclass(frozen=True)
class TextBatches:
  """The batches of a language-model run over one byte file.

  Training windows are sampled from the train split with the key of
  ``(seed, step)``; held-out batches walk the valid split from its start.

  Attributes:
    data: [N] uint8 bytes of the whole file (memory-mapped).
    window: bytes per window (steps per sequence).
    batch_size: training windows per batch.
    eval_batch_size: windows per evaluation batch.
    seed: seed of the run.
  """

  data: np.ndarray
  window: int
  batch_size: int
  eval_batch_size: int
  seed: int

  def train(self, step: int) -> Batch:
    return self.sampler()(split_bytes(self.data, "train"), self.seed, step)

  def sampler(self) -> WindowSampler:
    """The training batches as a pure function of the train split's bytes, seed and step."""
    return WindowSampler(self.window, self.batch_size)

  def sampler_data(self) -> np.ndarray:
    """What :meth:`sampler` reads: the train split (placed on the devices once)."""
    return split_bytes(self.data, "train")

  def held_out(self, max_batches: int, split: str = "valid") -> Iterator[Batch]:
    """Up to ``max_batches`` consecutive-window batches from the start of ``split``.

    With ``split="train"`` this measures the training bpc on the first bytes
    of the train split, the same amount as the held-out pass.
    """
    batches = eval_windows(split_bytes(self.data, split), self.eval_batch_size, self.window)
    for _, (inputs, targets, mask) in zip(range(max_batches), batches):
      yield _as_batch(inputs, targets, mask)
