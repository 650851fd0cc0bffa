"""Trigger words: where in a source file a fact may be, found with plain text searches.

The chunker (``chunks``) parses only the statements around these places: imports, ``environ``
and ``getenv``, GPU words, ``__main__`` guards and server starts, ``sys.path`` edits, pydantic
settings, and calls or keywords that take a literal path (``READ_CALLS``..., which the syntax
walk in ``pyextract`` reads too). A superset is fine: the parser decides.
"""

from __future__ import annotations

import re
from typing import Final

# Words whose lines may hold a fact: each is searched as a plain substring (fast), never as
# one big alternation, which the regex engine would try at every position.
# (environ and getenv: one search for "env", in ``trigger_positions``.)
WORDS: Final = (
    "import",  # also finds __import__ and import_module
    "__main__",
    "FastAPI(",
    "Flask(",
    "Starlette(",
    "cuda",  # also device="cuda", device_map="cuda:0": the literal holds the word
    "torch.accelerator.",  # PyTorch >= 2.6's device-agnostic API (pytorch/examples' mnist)
    "devices(",  # jax.devices, list_physical_devices
    "nccl",
    "sys.path",  # sys.path.insert(0, ...): where the repository's own modules are found
    "BaseSettings",  # pydantic settings classes: their fields are environment variables
)
# Words that only count when followed by one of their continuations (TensorFlow model files hold
# thousands of ``tf.`` calls; only ``tf.device`` and ``tf.config`` can say "GPU").
PREFIXED_WORDS: Final = (
    ("tf.", ("tf.device", "tf.config")),
    ("tensorflow.", ("tensorflow.device", "tensorflow.config")),
)
# Server starts only matter in a script: searched only when the file has a __main__ guard.
MAIN_WORDS: Final = (".run(", "uvicorn", "run_app", "waitress")
_LITERAL: Final = r"""[rRbBfFuU]{0,2}["']"""
# A call with a literal first argument, or a keyword with a literal value: the name before it
# decides (checked in Python, which is cheap: these are thousands, not millions).
_LITERAL_ARG: Final = re.compile(r"\(\s*" + _LITERAL)
_LITERAL_KW: Final = re.compile(r"=[ \t]*" + _LITERAL)
# Calls that read or write the path given as a literal argument (by the call's last name).
READ_CALLS: Final = frozenset(
    {
        "read_csv",
        "read_parquet",
        "read_json",
        "read_excel",
        "read_pickle",
        "read_table",
        "read_feather",
        "read_hdf",
        "read_orc",
        "load",
        "loadtxt",
        "genfromtxt",
        "load_file",
        "imread",
        "read_text",
        "read_bytes",
        "load_dataset",
        "load_from_disk",
        "load_model",
        "load_state_dict",
        "ImageFolder",
        "DatasetFolder",
        "safe_open",
    }
)
WRITE_CALLS: Final = frozenset(
    {
        "to_csv",
        "to_parquet",
        "to_json",
        "to_pickle",
        "to_feather",
        "to_excel",
        "to_hdf",
        "to_orc",
        "savefig",
        "save_pretrained",
        "save_model",
        "save_file",
        "save_to_disk",
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "dump",
        "imwrite",
        "save_image",
        "write_text",
        "write_bytes",
        "makedirs",
        "mkdir",
        "SummaryWriter",
        "FileHandler",
        "copy",
        "copyfile",
        "copytree",
        "export",
    }
)
WRITE_KEYWORDS: Final = frozenset(
    {
        "output_dir",
        "output_path",
        "out_dir",
        "log_dir",
        "logdir",
        "logging_dir",
        "save_dir",
        "save_path",
        "dirpath",
        "default_root_dir",
        "checkpoint_dir",
        "ckpt_dir",
        "cache_dir",
        "filename",
    }
)
READ_KEYWORDS: Final = frozenset(
    {
        "config_path",
        "data_dir",
        "data_path",
        "dataset_path",
        "data_files",
        "train_file",
        "validation_file",
        "test_file",
        "model_path",
        "weights",
        "root",
    }
)
# Names before "(" + literal, or before "=" + literal, that make a line worth parsing (a
# suffix match such as "reopen" only costs a parse).
PATH_CALLS: Final = tuple(
    sorted(READ_CALLS | WRITE_CALLS | {"open", "Path", "join", "from_pretrained"})
)
PATH_KEYWORDS: Final = tuple(sorted(READ_KEYWORDS | WRITE_KEYWORDS))
_OS_ALIASES: Final = (
    re.compile(r"environ[ \t]+as[ \t]+([A-Za-z_]\w*)"),
    re.compile(r"getenv[ \t]+as[ \t]+([A-Za-z_]\w*)"),
)


def trigger_positions(text: str) -> list[int]:
    """Offsets of every place that may hold a fact (a superset; the parser decides)."""
    found = _word_positions(text)
    os_words = _env_positions(text, found)
    for word, continuations in PREFIXED_WORDS:
        pos = text.find(word)
        while pos >= 0:
            if text.startswith(continuations, pos):
                found.append(pos)
            pos = text.find(word, pos + len(word))
    _literal_positions(text, found)
    if os_words:  # only where environ or getenv occurs can an alias of it exist
        _alias_positions(text, found)
    return found


def _word_positions(text: str) -> list[int]:
    """Offsets of the trigger words; server starts only matter in a script with a guard."""
    found: list[int] = []
    seen: set[str] = set()  # the words found: server starts depend on __main__
    words: tuple[str, ...] = WORDS
    while words:
        for word in words:
            pos = text.find(word)
            if pos >= 0:
                seen.add(word)
            while pos >= 0:
                found.append(pos)
                pos = text.find(word, pos + len(word))
        # A second round only when the file has a guard.
        words = MAIN_WORDS if words is WORDS and "__main__" in seen else ()
    return found


def _env_positions(text: str, found: list[int]) -> bool:
    """Add the offsets of environ and getenv; True when there was one.

    One search for the "env" they share (about 1 in 10^5 characters).
    """
    os_words = False
    pos = text.find("env")
    while pos >= 0:
        if text.startswith("environ", pos):
            found.append(pos)
            os_words = True
        elif pos >= 3 and text.startswith("getenv", pos - 3):
            found.append(pos - 3)
            os_words = True
        pos = text.find("env", pos + 3)
    return os_words


def _literal_positions(text: str, found: list[int]) -> None:
    """Add path calls and keywords with a literal argument.

    ``open("x")``, ``output_dir="x"``, and ``torch.save(obj, "path")`` or
    ``joblib.dump(obj, "path")`` (a literal later on the line).
    """
    for pattern, names in ((_LITERAL_ARG, PATH_CALLS), (_LITERAL_KW, PATH_KEYWORDS)):
        for match in pattern.finditer(text):
            pos = end = match.start()
            while end and text[end - 1] in " \t":  # open ("x"), output_dir = "x"
                end -= 1
            if text.endswith(names, max(0, end - 24), end):
                found.append(pos)
    for word in ("save(", "dump("):
        pos = text.find(word)
        while pos >= 0:
            end = text.find("\n", pos)
            rest = text[pos : end if end >= 0 else len(text)]
            if '"' in rest or "'" in rest:
                found.append(pos)
            pos = text.find(word, pos + 1)


def _alias_positions(text: str, found: list[int]) -> None:
    """`from os import environ as E`: add the uses of E, which carry no trigger word."""
    aliases = {alias for pattern in _OS_ALIASES for alias in pattern.findall(text)}
    for alias in aliases:
        found.extend(m.start() for m in re.finditer(rf"\b{re.escape(alias)}\b", text))
