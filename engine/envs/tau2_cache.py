"""tau2's domain assets, loaded once per process, and cheap environments built from them.

Stock tau2 re-reads and re-parses a domain's database and policy files for every
environment (the airline database alone is 7 MB of JSON, ~0.26 s), and validates solo
mode by building every tool's pydantic schema. Here each domain's databases are parsed
once; an environment is a shallow copy of a per-(domain, solo_mode) template built by
tau2's own constructor, with fresh toolkits over a cheap copy of the databases:

- airline, retail: copy-on-write views (`engine.envs.cow`), microseconds per copy;
- telecom, mock (small databases): a pickle round-trip of the parsed database.

`new_environment` gives the same environment as `registry.get_env_constructor(domain)
(solo_mode=...)`: same class, policy, toolkits, solo mode and database contents, after
the same `sync_tools()` call the constructor ends with.
"""

from __future__ import annotations

import copy
import gc
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine import taskdata, tau2lib
from engine.envs import cow

if TYPE_CHECKING:
    from tau2.environment.db import DB
    from tau2.environment.environment import Environment

VIEW_DOMAINS = frozenset({"airline", "retail"})
"""Domains whose large dict-of-records databases are shared through copy-on-write views."""

Fingerprint = str | cow.Snapshot | None
"""A database state, comparable later: tau2's hash, a view snapshot, or None (no database)."""


class SharedDatabase:
    """One parsed database, never written, and cheap private copies of it."""

    def __init__(self, base: DB, *, views: bool) -> None:
        self.base = base
        self.views = views
        self._blob = None if views else pickle.dumps(base, protocol=pickle.HIGHEST_PROTOCOL)
        self._fragments = cow.BaseFragments(base)

    def copy(self) -> DB:
        if self._blob is None:
            return cow.view(self.base)
        copied: DB = pickle.loads(self._blob)
        return copied

    def fingerprint(self, db: DB | None) -> Fingerprint:
        """The state of `db` (a copy of this database, possibly modified since)."""
        if db is None:
            return None
        if self.views and cow.is_view_of(db, self.base):
            return cow.Snapshot(db)
        return db.get_hash()

    def matches(self, db: DB | None, reference: Fingerprint) -> bool | None:
        """Whether tau2's hash of `db` equals that of the state `reference` was taken of;
        None when that cannot be told cheaply (a view compared with a replaced database)."""
        if db is None or reference is None:
            return db is None and reference is None
        if isinstance(reference, cow.Snapshot):
            if not cow.is_view_of(db, self.base):
                return None
            return cow.same_state(db, reference, self._fragments)
        return db.get_hash() == reference


@dataclass
class DomainAssets:
    """Everything about one domain that does not change between episodes."""

    domain: str
    data_dir: str | None
    db: SharedDatabase
    user_db: SharedDatabase | None
    constructor: Callable[..., Environment]
    _templates: dict[bool, Environment] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def template(self, solo_mode: bool) -> Environment:
        """tau2's own environment for this domain and mode (built once, never used)."""
        found = self._templates.get(solo_mode)
        if found is None:
            with self._lock:
                found = self._templates.get(solo_mode)
                if found is None:
                    kwargs: dict[str, Any] = {"db": self.db.copy(), "solo_mode": solo_mode}
                    if self.user_db is not None:
                        kwargs["user_db"] = self.user_db.copy()
                    found = self.constructor(**kwargs)
                    # The constructor reads the package's policy file; the data source may differ.
                    found.policy = taskdata.policy(self.data_dir, self.domain, solo_mode)
                    self._templates[solo_mode] = found
        return found

    def policy(self, solo_mode: bool) -> str:
        return self.template(solo_mode).get_policy()


_assets: dict[tuple[str | None, str], DomainAssets] = {}
_assets_lock = threading.Lock()


def domain_assets(domain: str, data_dir: str | None = None) -> DomainAssets:
    """The domain's assets from a data source (engine.taskdata), loaded on first use
    (thread-safe)."""
    key = (data_dir, domain)
    found = _assets.get(key)
    if found is not None:
        return found
    with _assets_lock:
        found = _assets.get(key)
        if found is None:
            agent_db, user_db = taskdata.load_databases(data_dir, domain)
            views = domain in VIEW_DOMAINS
            found = DomainAssets(
                domain=domain,
                data_dir=data_dir,
                db=SharedDatabase(agent_db, views=views),
                user_db=SharedDatabase(user_db, views=False) if user_db is not None else None,
                constructor=tau2lib.load().registry.get_env_constructor(domain),
            )
            _assets[key] = found
            if _freeze_shared:
                gc.freeze()
    return found


_freeze_shared = False


def freeze_shared_data() -> None:
    """For a program that owns its process (the CLI, a worker): keep the cyclic garbage
    collector from walking the shared databases' millions of objects on every full
    collection (a full pass over the airline database stalls the event loop ~0.3 s), by
    `gc.freeze()` after every domain load. Process-wide, so a library never does it
    unasked."""
    global _freeze_shared
    with _assets_lock:
        _freeze_shared = True
        gc.freeze()


def new_environment(domain: str, *, solo_mode: bool, data_dir: str | None = None) -> Environment:
    """A fresh environment, as `registry.get_env_constructor(domain)(solo_mode=...)` builds
    it, over private copies of the shared databases (of `data_dir`'s data, see
    engine.taskdata)."""
    assets = domain_assets(domain, data_dir)
    template = assets.template(solo_mode)
    env = copy.copy(template)
    # Environment.__init__ sets these, validates solo mode (a property of the toolkit
    # classes, already checked on the template) and ends with sync_tools().
    if template.tools is not None:
        env.tools = type(template.tools)(assets.db.copy())
    if template.user_tools is not None and assets.user_db is not None:
        env.user_tools = type(template.user_tools)(assets.user_db.copy())
    env.sync_tools()
    return env


def agent_fingerprint(domain: str, env: Environment, data_dir: str | None = None) -> Fingerprint:
    return domain_assets(domain, data_dir).db.fingerprint(env.tools.db if env.tools is not None else None)


def user_fingerprint(domain: str, env: Environment, data_dir: str | None = None) -> Fingerprint:
    shared = domain_assets(domain, data_dir).user_db
    db = env.user_tools.db if env.user_tools is not None else None
    if shared is None:
        return None if db is None else db.get_hash()
    return shared.fingerprint(db)


def agent_matches(
    domain: str, env: Environment, reference: Fingerprint, data_dir: str | None = None
) -> bool | None:
    db = env.tools.db if env.tools is not None else None
    return domain_assets(domain, data_dir).db.matches(db, reference)


def user_matches(
    domain: str, env: Environment, reference: Fingerprint, data_dir: str | None = None
) -> bool | None:
    shared = domain_assets(domain, data_dir).user_db
    db = env.user_tools.db if env.user_tools is not None else None
    if shared is None:
        if isinstance(reference, cow.Snapshot):
            return None
        return (None if db is None else db.get_hash()) == reference
    return shared.matches(db, reference)
