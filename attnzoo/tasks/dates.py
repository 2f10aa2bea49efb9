"""Date normalisation: human-written dates in many formats -> ISO 8601."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import torch
from torch import Tensor

from attnzoo.tasks._util import python_rng
from attnzoo.tasks.base import Task, TaskSpec, attention_beats_baseline

__all__ = ["DateFormatTask", "FORMATS", "CHARS", "TASKS"]

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FIRST = dt.date(1969, 1, 1)  # two-digit years read as C/POSIX strptime does: 69-99 -> 19xx, 00-68 -> 20xx
LAST = dt.date(2068, 12, 31)


def _ordinal(d: int) -> str:
    suffix = "th" if 11 <= d % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    return f"{d}{suffix}"


#: (name, formatter(date) -> str). The numeric conventions are fixed per separator so the
#: answer is determined: "/" is US month/day, "." and "-" with the year last are day.month.
FORMATS: tuple[tuple[str, Callable[[dt.date], str]], ...] = (
    ("d Month YYYY", lambda x: f"{x.day} {MONTHS[x.month - 1]} {x.year}"),
    ("d Mon YYYY", lambda x: f"{x.day} {MONTHS[x.month - 1][:3]} {x.year}"),
    ("Month d, YYYY", lambda x: f"{MONTHS[x.month - 1]} {x.day}, {x.year}"),
    ("Mon d, YYYY", lambda x: f"{MONTHS[x.month - 1][:3]} {x.day}, {x.year}"),
    ("Weekday, Month dth YYYY", lambda x: f"{WEEKDAYS[x.weekday()]}, {MONTHS[x.month - 1]} {_ordinal(x.day)} {x.year}"),
    ("Wkd, d Mon YYYY", lambda x: f"{WEEKDAYS[x.weekday()][:3]}, {x.day} {MONTHS[x.month - 1][:3]} {x.year}"),
    ("dth of Month, YYYY", lambda x: f"{_ordinal(x.day)} of {MONTHS[x.month - 1]}, {x.year}"),
    ("Month dth, YYYY", lambda x: f"{MONTHS[x.month - 1]} {_ordinal(x.day)}, {x.year}"),
    ("dd-Mon-YYYY", lambda x: f"{x.day:02d}-{MONTHS[x.month - 1][:3]}-{x.year}"),
    ("MM/DD/YY", lambda x: f"{x.month:02d}/{x.day:02d}/{x.year % 100:02d}"),
    ("M/D/YYYY", lambda x: f"{x.month}/{x.day}/{x.year}"),
    ("DD.MM.YYYY", lambda x: f"{x.day:02d}.{x.month:02d}.{x.year}"),
    ("DD-MM-YYYY", lambda x: f"{x.day:02d}-{x.month:02d}-{x.year}"),
    ("YYYY/MM/DD", lambda x: f"{x.year}/{x.month:02d}/{x.day:02d}"),
    ("YYYY-MM-DD", lambda x: x.isoformat()),
    ("month d yyyy", lambda x: f"{MONTHS[x.month - 1].lower()} {x.day} {x.year}"),
)

#: the character vocabulary; id 0 is PAD, CHARS[i] has id i + 1
CHARS: str = "".join(sorted(set("0123456789 ,./-of" + "stndrh" + "".join(MONTHS + WEEKDAYS) + "".join(MONTHS).lower())))
_LUT = torch.zeros(256, dtype=torch.long)
_LUT[torch.tensor(list(CHARS.encode("ascii")))] = torch.arange(1, len(CHARS) + 1)
_SRC_LEN = max(  # the longest rendering: try every month, weekday and day
    len(fmt(dt.date(2000, 1, 1) + dt.timedelta(days=i))) for _, fmt in FORMATS for i in range(7 * 366)
)


def _encode(strings: list[str], width: int) -> Tensor:
    """long [N, width]: character ids, right-padded with PAD."""
    raw = b"".join(s.encode("ascii").ljust(width, b"\0") for s in strings)
    return _LUT[torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()].view(len(strings), width)


def date_fields(text: str) -> dict[str, tuple[int, int]]:
    """``{"year": (start, end), "month": ..., "day": ...}``: the character span of each field in a date
    written in one of :data:`FORMATS` (the same reading as :meth:`DateFormatTask.solve`)."""
    words = [m for m in re.finditer(r"[A-Za-z]+", text) if m.group()[:3].lower() in _MONTH_PREFIXES]
    numbers = list(re.finditer(r"\d+", text))
    if words:  # a month name: the 4-digit number is the year, the other the day
        year = next(m for m in numbers if len(m.group()) == 4)
        day = next(m for m in numbers if len(m.group()) <= 2)
        month = words[0]
    elif len(numbers[0].group()) == 4:
        year, month, day = numbers
    elif "/" in text:
        month, day, year = numbers
    else:
        day, month, year = numbers
    return {"year": year.span(), "month": month.span(), "day": day.span()}


_MONTH_PREFIXES = tuple(m[:3].lower() for m in MONTHS)


class DateFormatTask(Task):
    """Rewrite a human-written date as ISO 8601 (``"Wednesday, March 3rd 2021"`` -> ``"2021-03-03"``).

    Tests: a small real seq2seq transduction with non-monotonic alignment (the year
    often comes last in the input and first in the output), words to digits
    (``March`` -> ``03``) and inputs of varying length.

    Formats (``FORMATS``, 16, drawn uniformly): ``3 March 2021``, ``3 Mar 2021``,
    ``March 3, 2021``, ``Mar 3, 2021``, ``Wednesday, March 3rd 2021``,
    ``Wed, 3 Mar 2021``, ``3rd of March, 2021``, ``March 3rd, 2021``, ``03-Mar-2021``,
    ``03/03/21`` (US month/day, two-digit years read as POSIX strptime: 69-99 ->
    19xx, 00-68 -> 20xx), ``3/3/2021`` (US), ``03.03.2021`` and ``03-03-2021``
    (day first), ``2021/03/03``, ``2021-03-03``, ``march 3 2021``. Dates are uniform
    over 1969-01-01 .. 2068-12-31.

    Paper: the classic toy of neural machine translation tutorials (e.g. the
    Keras/Coursera "neural machine translation with attention" date exercise); a
    stand-in for real seq2seq (Bahdanau et al. 2015) that trains on a CPU.

    Knobs: none. Splits: train/val/test; S = the longest rendering (30 chars),
    right-padded with PAD; T = 10. Character vocabulary ``CHARS`` (id 0 = PAD),
    ``vocab_size = num_classes = len(CHARS) + 1``. Generated in Python (a few tens
    of microseconds an example).

    Metric: ``exact_acc``. Chance: ``1/36525`` (guessing one date of the range).
    """

    spec = TaskSpec(
        name="date-format",
        summary="human-written dates in many formats -> ISO 8601 (YYYY-MM-DD)",
        paper="Bahdanau et al. 2015 (attention for seq2seq); the date-normalisation toy of NMT tutorials",
        url="https://arxiv.org/abs/1409.0473",
        metric="exact_acc",
        contrasts=(
            attention_beats_baseline(backbone="seq2seq", baseline_backbone="seq2seq",
                                     why="Bahdanau et al. 2015: with non-monotonic alignment (the year moves "
                                         "from last to first) the decoder gains from reading the encoder states"),
        ),
    )

    def __init__(self) -> None:
        super().__init__()
        self.vocab_size = self.num_classes = len(CHARS) + 1
        self.src_len, self.tgt_len = _SRC_LEN, 10
        self._first = FIRST.toordinal()
        self._days = LAST.toordinal() - self._first + 1

    def generate(self, n: int, generator: torch.Generator, *, long: bool = False) -> dict[str, Tensor]:
        if long:
            raise ValueError(f"task {self.spec.name!r} has no long split")
        rng = python_rng(generator)
        dates = [dt.date.fromordinal(self._first + rng.randrange(self._days)) for _ in range(n)]
        src = [FORMATS[rng.randrange(len(FORMATS))][1](d) for d in dates]
        return {"src": _encode(src, self.src_len), "tgt": _encode([d.isoformat() for d in dates], 10)}

    def gold_alignment(self, batch: dict[str, Tensor]) -> Tensor:
        """The field being written: the ISO year's four characters read every source character of the
        year (a two-digit year too: its century follows from those two digits), the month's two read
        the month (its digits or its name), the day's two the day's digits; the ``-`` separators read
        nothing."""
        src = batch["src"]
        gold = torch.zeros(*batch["tgt"].shape, src.shape[1], dtype=torch.bool)
        for i, row in enumerate(src.tolist()):
            spans = date_fields("".join(CHARS[t - 1] for t in row if t))
            for field, outputs in (("year", range(0, 4)), ("month", range(5, 7)), ("day", range(8, 10))):
                start, end = spans[field]
                gold[i, list(outputs), start:end] = True
        return gold.to(src.device)

    def token_names(self) -> list[str]:
        """The characters (``␣`` for a space)."""
        return ["·", *(c if c != " " else "␣" for c in CHARS)]

    def solve(self, src: list[int]) -> list[int]:
        text = "".join(CHARS[t - 1] for t in src if t)
        words = re.findall(r"[A-Za-z]+", text)
        numbers = re.findall(r"\d+", text)
        month_names = [m[:3].lower() for m in MONTHS]
        # no weekday name (nor "of", "st", ...) starts with a month's first three letters
        named = [month_names.index(w[:3].lower()) + 1 for w in words if w[:3].lower() in month_names]
        if named:  # a month name: the 4-digit number is the year, the other the day
            month = named[0]
            year = next(int(x) for x in numbers if len(x) == 4)
            day = next(int(x) for x in numbers if len(x) <= 2)
        elif len(numbers[0]) == 4:  # YYYY?MM?DD
            year, month, day = map(int, numbers)
        elif "/" in text:  # US: month/day/year
            month, day, year = map(int, numbers)
        else:  # day.month.year or day-month-year
            day, month, year = map(int, numbers)
        if year < 100:
            year += 2000 if year < 69 else 1900
        iso = f"{year:04d}-{month:02d}-{day:02d}"
        return [CHARS.index(c) + 1 for c in iso]

    def chance(self) -> float:
        return 1.0 / self._days


TASKS = [DateFormatTask]
