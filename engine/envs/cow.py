"""Copy-on-write views of a parsed tau2 database.

tau2's airline and retail databases are a few dicts of records (flights, users,
reservations; products, users, orders) holding megabytes of parsed pydantic models. An
episode touches a handful of records, so instead of a deep copy per environment each
episode gets a `CowDict` per field: a dict holding the *shared* base records until a
record is reached by key (`db.users[user_id]`, `.get`, `.pop`, ...), at which point that
record alone is deep-copied into the view. Writes (`db.reservations[rid] = r`) land in
the view. The base is never written.

Iteration (`.values()`, `.items()`, `for k in d`) hands out records without copying
them: tau2's tools only read records they find by scanning (airline `search_*_flight`,
retail `find_user_id_by_*`, `list_all_product_types`) and mutate only what they fetch by
key; `tests/test_tau2_cache.py` checks that a full run of every task leaves the base
unchanged.

The keys a view has copied or written (`touched`) are the only places two views of one
base can differ, which makes comparing two databases cheap: see `same_state`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

_MISSING: Any = object()

D = TypeVar("D", bound=BaseModel)


class CowDict(dict[str, Any]):
    """A dict of records sharing untouched records with a base mapping."""

    __slots__ = ("base", "touched")

    def __init__(self, base: Mapping[str, Any]) -> None:
        super().__init__(base)
        self.base = base
        self.touched: set[str] = set()

    def _own(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if key not in self.touched:
            self.touched.add(key)
            if value is self.base.get(key, _MISSING):
                value = copy.deepcopy(value)
                dict.__setitem__(self, key, value)
        return value

    def __getitem__(self, key: str) -> Any:
        return self._own(key)

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self._own(key)
        return default

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self._own(key)
        self[key] = default
        return default

    def __setitem__(self, key: str, value: Any) -> None:
        self.touched.add(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self.touched.add(key)
        dict.__delitem__(self, key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            value = self._own(key)
            dict.__delitem__(self, key)
            return value
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[str, Any]:
        key = next(reversed(self.keys()))
        return key, self.pop(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        self.touched.update(self.keys())
        dict.clear(self)

    def __copy__(self) -> dict[str, Any]:
        return {key: self[key] for key in self}

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {key: copy.deepcopy(dict.__getitem__(self, key), memo) for key in self}

    def __reduce__(self) -> Any:
        return (dict, (dict(self.items()),))

    def __iter__(self) -> Iterator[str]:
        return dict.__iter__(self)


def record_fields(db: BaseModel) -> tuple[str, ...]:
    """The fields of `db` that are dicts of records (the ones a view shares)."""
    return tuple(name for name in type(db).model_fields if isinstance(getattr(db, name), dict))


def view(base: D) -> D:
    """A copy-on-write view of `base`: its dict-of-records fields are `CowDict`s over
    `base`'s dicts, every other field is deep-copied."""
    values: dict[str, Any] = {}
    for name in type(base).model_fields:
        value = getattr(base, name)
        values[name] = CowDict(value) if isinstance(value, dict) else copy.deepcopy(value)
    return type(base).model_construct(_fields_set=set(base.model_fields_set), **values)


def is_view_of(db: object, base: BaseModel) -> bool:
    if type(db) is not type(base):
        return False
    for name in type(base).model_fields:
        value = getattr(db, name)
        shared = getattr(base, name)
        if isinstance(shared, dict) and not (isinstance(value, CowDict) and value.base is shared):
            return False
    return True


def fragment(value: Any) -> str:
    """The JSON text tau2's `get_dict_hash` writes for one record (or field) of a dump."""
    dumped = value.model_dump() if isinstance(value, BaseModel) else value
    return json.dumps(dumped, sort_keys=True, default=str)


class Snapshot:
    """What is needed to compare a view's state later: the JSON of each touched record
    (None for a deleted one) and of each non-record field."""

    def __init__(self, db: BaseModel) -> None:
        self.records: dict[str, dict[str, str | None]] = {}
        self.others: dict[str, str] = {}
        for name in type(db).model_fields:
            value = getattr(db, name)
            if isinstance(value, CowDict):
                self.records[name] = {
                    key: fragment(dict.__getitem__(value, key)) if key in value else None
                    for key in value.touched
                }
            else:
                self.others[name] = fragment(_dump_field(db, name))


def _dump_field(db: BaseModel, name: str) -> Any:
    return db.model_dump(include={name})[name]


class BaseFragments:
    """JSON of the base's records, computed on first use and kept (the base never changes)."""

    def __init__(self, base: BaseModel) -> None:
        self.base = base
        self._cache: dict[tuple[str, str], str | None] = {}

    def get(self, name: str, key: str) -> str | None:
        hit = self._cache.get((name, key), _MISSING)
        if hit is _MISSING:
            records: dict[str, Any] = getattr(self.base, name)
            hit = fragment(records[key]) if key in records else None
            self._cache[(name, key)] = hit
        return hit


def same_state(db: BaseModel, reference: Snapshot, base: BaseFragments) -> bool:
    """True exactly when tau2's `get_dict_hash(db.model_dump())` equals that of the
    database `reference` was taken from (both views of `base`).

    The hash is sha256 of `json.dumps(dump, sort_keys=True, default=str)`. With sorted
    keys, the dump's JSON is the field JSONs in a fixed order, and a dict field's JSON is
    its records' JSONs in key order; JSON values parse unambiguously, so two dumps have
    equal text iff every field and every record has equal text (and the same keys).
    Records neither view touched are the same base object in both, so only touched keys
    and non-record fields need comparing.
    """
    for name in type(db).model_fields:
        value = getattr(db, name)
        if isinstance(value, CowDict):
            theirs = reference.records.get(name, {})
            for key in value.touched | theirs.keys():
                mine = fragment(dict.__getitem__(value, key)) if key in value else None
                other = theirs[key] if key in theirs else base.get(name, key)
                if mine != other:
                    return False
        elif fragment(_dump_field(db, name)) != reference.others.get(name):
            return False
    return True
