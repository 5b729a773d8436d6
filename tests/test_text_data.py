"""Tests of the Hutter-prize byte loader (tasks/data/text.py)."""

import hashlib
import os
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest

from tasks.data import text

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENWIK6 = os.path.join(REPO_ROOT, "..", "shared", "data", "enwik6")
ENWIK6_SHA256 = "369b688978f649681136198fb96db14c1616756260c55fb4b65e9bc049552cad"


@pytest.fixture
def enwik6() -> np.ndarray:
  if not os.path.exists(ENWIK6):
    pytest.skip(f"{ENWIK6} not available")
  return text.load_bytes(ENWIK6)


def _ramp_file(tmp_path, size: int, name: str = "ramp.bin") -> str:
  path = os.path.join(tmp_path, name)
  (np.arange(size) % 256).astype(np.uint8).tofile(path)
  return path


def test_enwik6_loads_as_memmap(enwik6):
  assert isinstance(enwik6, np.memmap)
  assert enwik6.dtype == np.uint8 and enwik6.shape == (10**6,)
  assert hashlib.sha256(enwik6.tobytes()).hexdigest() == ENWIK6_SHA256
  assert enwik6[:5].tobytes() == b"<medi"


def test_enwik6_splits_tile_the_file(enwik6):
  parts = [text.split_bytes(enwik6, s) for s in text.SPLITS]
  assert [len(p) for p in parts] == [900_000, 50_000, 50_000]
  np.testing.assert_array_equal(np.concatenate(parts), enwik6)
  for part in parts:
    assert np.shares_memory(part, enwik6)


def test_split_sizes():
  assert text.split_sizes(text.ENWIK8_SIZE) == (90_000_000, 5_000_000, 5_000_000)
  for n in (1, 19, 20, 1001, 12345):
    sizes = text.split_sizes(n)
    assert sum(sizes) == n and min(sizes) >= 0


def test_bad_split_raises(enwik6):
  with pytest.raises(ValueError, match="'eval'"):
    text.split_bytes(enwik6, "eval")


def test_missing_and_empty_files(tmp_path):
  missing = os.path.join(tmp_path, "nope.bin")
  with pytest.raises(FileNotFoundError, match="nope.bin") as error:
    text.load_bytes(missing)
  assert "python -m launch.fetch_data --dest=DIR" in str(error.value)  # how to get the data
  empty = os.path.join(tmp_path, "empty.bin")
  open(empty, "wb").close()
  with pytest.raises(ValueError, match="empty.bin"):
    text.load_bytes(empty)


def test_fake_enwik8_fails_check(tmp_path):
  path = _ramp_file(tmp_path, 1000, name="enwik8")
  with pytest.raises(ValueError, match=str(text.ENWIK8_SIZE)) as error:
    text.load_bytes(path)
  assert "check_sha1=False" in str(error.value)
  # The size check is part of the SHA-1 check: skipping it accepts the file.
  assert len(text.load_bytes(path, check_sha1=False)) == 1000


def test_wrong_sha1_names_expected_and_actual(tmp_path, monkeypatch):
  path = _ramp_file(tmp_path, 1000, name="enwik8")
  monkeypatch.setattr(text, "ENWIK8_SIZE", 1000)
  actual = hashlib.sha1(open(path, "rb").read()).hexdigest()
  with pytest.raises(ValueError) as error:
    text.load_bytes(path)
  assert text.ENWIK8_SHA1 in str(error.value) and actual in str(error.value)
  monkeypatch.setattr(text, "ENWIK8_SHA1", actual)
  assert len(text.load_bytes(path)) == 1000


def test_zip_extracts_once(tmp_path):
  payload = bytes(range(256)) * 4
  zip_path = os.path.join(tmp_path, "enwik8.zip")
  with zipfile.ZipFile(zip_path, "w") as archive:
    archive.writestr("enwik8", payload)
  data = text.load_bytes(zip_path, check_sha1=False)
  assert isinstance(data, np.memmap)
  assert data.tobytes() == payload
  extracted = os.path.join(tmp_path, "enwik8")
  assert os.path.exists(extracted)
  # A second load reuses the extracted file instead of extracting again.
  with open(extracted, "r+b") as f:
    f.write(b"X")
  assert text.load_bytes(zip_path, check_sha1=False)[0] == ord("X")
  # The extracted file is still checked as enwik8.
  with pytest.raises(ValueError, match=str(text.ENWIK8_SIZE)):
    text.load_bytes(zip_path)


def _mirror(tmp_path, payload: bytes) -> str:
  """A file:// URL of an enwik8.zip holding ``payload`` as its enwik8 (the prize page's layout)."""
  (tmp_path / "mirror").mkdir()
  zip_path = tmp_path / "mirror" / "enwik8.zip"
  with zipfile.ZipFile(zip_path, "w") as archive:
    archive.writestr("enwik8", payload)
  return zip_path.as_uri()


def test_fetch_enwik8_checks_it_and_writes_enwik6(tmp_path, monkeypatch):
  payload = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
  url = _mirror(tmp_path, payload)
  monkeypatch.setattr(text, "ENWIK8_SIZE", len(payload))  # this payload stands for enwik8
  monkeypatch.setattr(text, "ENWIK8_SHA1", hashlib.sha1(payload).hexdigest())
  monkeypatch.setattr(text, "ENWIK6_SIZE", 1000)
  dest = tmp_path / "data"
  path = text.fetch_enwik8(str(dest), url)
  assert path == str(dest / "enwik8")
  assert (dest / "enwik8").read_bytes() == payload
  assert (dest / "enwik6").read_bytes() == payload[:1000]
  assert text.load_bytes(path).tobytes() == payload  # passes the loader's own check
  assert sorted(os.listdir(dest)) == ["enwik6", "enwik8", "enwik8.zip"]  # no partial files
  # The zip is there: a second fetch downloads nothing.
  assert text.fetch_enwik8(str(dest), (tmp_path / "nowhere.zip").as_uri()) == path


def test_fetch_enwik8_rejects_other_bytes(tmp_path, monkeypatch):
  payload = b"not enwik8" * 100
  url = _mirror(tmp_path, payload)
  monkeypatch.setattr(text, "ENWIK8_SIZE", len(payload))
  dest = tmp_path / "data"
  with pytest.raises(ValueError) as error:
    text.fetch_enwik8(str(dest), url)
  assert hashlib.sha1(payload).hexdigest() in str(error.value)
  assert text.ENWIK8_SHA1 in str(error.value) and url in str(error.value)
  assert os.listdir(dest) == []  # the next try downloads again


def test_fetch_data_command_reports_one_line(tmp_path):
  url = _mirror(tmp_path, b"short")  # not the published enwik8: its size is wrong
  result = subprocess.run([sys.executable, "-m", "launch.fetch_data", f"--dest={tmp_path / 'data'}",
                           f"--url={url}"], cwd=REPO_ROOT, capture_output=True, text=True)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"error: '{tmp_path / 'data' / 'enwik8'}' is named enwik8 but has 5 bytes, expected "
      f"{text.ENWIK8_SIZE}: {url} did not give the published enwik8 (both files removed)"]


def test_zip_without_member_raises(tmp_path):
  zip_path = os.path.join(tmp_path, "enwik8.zip")
  with zipfile.ZipFile(zip_path, "w") as archive:
    archive.writestr("other", b"abc")
  with pytest.raises(ValueError, match="'enwik8'"):
    text.load_bytes(zip_path, check_sha1=False)


def test_sample_windows_shift_and_determinism(tmp_path):
  data = text.load_bytes(_ramp_file(tmp_path, 5000))
  key = jax.random.PRNGKey(0)
  inputs, targets = text.sample_windows(data, key, batch_size=8, window=100)
  assert inputs.shape == targets.shape == (8, 100)
  assert inputs.dtype == targets.dtype == np.uint8
  np.testing.assert_array_equal(targets, (inputs.astype(int) + 1) % 256)
  np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
  again = text.sample_windows(data, key, batch_size=8, window=100)
  np.testing.assert_array_equal(again[0], inputs)
  other = text.sample_windows(data, jax.random.PRNGKey(1), batch_size=8, window=100)
  assert not np.array_equal(other[0], inputs)


def test_sample_windows_within_split(enwik6):
  valid = text.split_bytes(enwik6, "valid")
  inputs, targets = text.sample_windows(valid, jax.random.PRNGKey(3), batch_size=16)
  assert inputs.shape == (16, text.WINDOW)
  raw = valid.tobytes()
  for row_in, row_target in zip(inputs, targets):
    start = raw.find(row_in.tobytes())
    assert start >= 0
    assert raw[start + 1 : start + text.WINDOW + 1] == row_target.tobytes()


def test_sample_windows_uses_every_start(tmp_path):
  # With window = len - 1 there is one start; with window = len - 2 two.
  data = text.load_bytes(_ramp_file(tmp_path, 12))
  inputs, _ = text.sample_windows(data, jax.random.PRNGKey(0), batch_size=4, window=11)
  assert np.all(inputs[:, 0] == 0)
  inputs, _ = text.sample_windows(data, jax.random.PRNGKey(0), batch_size=64, window=10)
  assert set(inputs[:, 0].tolist()) == {0, 1}


def test_sample_windows_too_short(tmp_path):
  data = text.load_bytes(_ramp_file(tmp_path, 100))
  with pytest.raises(ValueError, match="100 bytes.*101"):
    text.sample_windows(data, jax.random.PRNGKey(0), batch_size=2, window=100)


def test_eval_windows_cover_split_once():
  split = np.random.default_rng(0).integers(0, 256, 1234, dtype=np.uint8)
  batches = list(text.eval_windows(split, batch_size=4, window=100))
  assert len(batches) == 4  # 1233 targets -> 13 windows -> 4 batches of 4
  for inputs, targets, mask in batches:
    assert inputs.shape == targets.shape == mask.shape == (4, 100)
    assert mask.dtype == bool
  masked_targets = np.concatenate([t[m] for _, t, m in batches])
  masked_inputs = np.concatenate([i[m] for i, _, m in batches])
  np.testing.assert_array_equal(masked_targets, split[1:])
  np.testing.assert_array_equal(masked_inputs, split[:-1])
  last_mask = batches[-1][2]
  assert last_mask[0, :33].all() and not last_mask[0, 33:].any() and not last_mask[1:].any()
  assert np.all(batches[-1][1][~last_mask] == 0)


def test_eval_windows_exact_fit():
  split = np.arange(801, dtype=np.int64).astype(np.uint8)
  batches = list(text.eval_windows(split, batch_size=2, window=100))
  assert len(batches) == 4 and all(m.all() for _, _, m in batches)


def test_character_class():
  classes = text.character_class(np.frombuffer(b" aZ9.,<>\n\xc3\t", np.uint8))
  names = [text.CHARACTER_CLASSES[c] for c in classes]
  assert names == [
    "space", "letter", "letter", "digit", "punctuation", "punctuation",
    "angle", "angle", "newline", "other", "other",
  ]
  assert text.character_class(np.arange(256)).shape == (256,)
