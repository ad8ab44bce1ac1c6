"""``ld3 keys``: create, list or revoke API keys straight on the database (run it on the server)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def format_keys(keys: list[dict[str, Any]]) -> str:
    """``ld3 keys list``: one line per key (no hash: only the display prefix is kept in the clear)."""
    lines = [f"{'id':>4}  {'name':<24} {'prefix':<9} {'scopes':<36} {'created':<19}  revoked"]
    for k in keys:
        revoked = k["revoked_at"][:19] if k["revoked_at"] else "-"
        lines.append(f"{k['id']:>4}  {k['name']:<24} {k['prefix']:<9} {' '.join(k['scopes']):<36} {k['created_at'][:19]}  {revoked}")
    return "\n".join(lines)


def _key_id(text: str) -> int:
    """An API key id as argparse reads it: a positive 32-bit integer (the column's range)."""
    value = int(text) if text.strip().lstrip("+-").isdigit() else 0
    if not 1 <= value <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a key id (an integer 1..{2**31 - 1}, from `ld3 keys list`)")
    return value


def _keys_action(s, args: argparse.Namespace) -> tuple[list[dict[str, Any]], str | None]:
    """Run ``ld3 keys ACTION`` in session ``s``: (the keys it touched, as GET /keys shows them; the plaintext of a new one)."""
    from registry import keys as key_q
    from registry.schemas import ApiKeyPublic

    def public(row) -> dict[str, Any]:
        return ApiKeyPublic.from_row(row).model_dump(mode="json")

    if args.action == "create":
        row, plaintext = key_q.create_key(s, name=args.name, scopes=args.scopes)
        return [public(row)], plaintext
    if args.action == "list":
        return [public(r) for r in key_q.list_keys(s)], None
    was = key_q.revoke_key(s, args.id)
    if was is None:
        raise LookupError(f"id: no API key has id {args.id}")
    return [public(was)], None


def cmd_keys(args: argparse.Namespace) -> int:
    """Create, list or revoke API keys straight on the database of the settings (run it on the server)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from registry.db import make_engine, make_session_factory, session_scope
    from registry.settings import Settings

    settings = Settings(**({"database_url": args.database_url} if args.database_url else {}))
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as s:
            touched, plaintext = _keys_action(s, args)
    except (ValueError, LookupError) as e:
        print(f"ld3 keys {args.action}: error: {e}", file=sys.stderr)
        return 1
    except SQLAlchemyError as e:
        print(f"ld3 keys {args.action}: error: database {where}: {e.__class__.__name__}: {getattr(e, 'orig', None) or e} "
              "(is it migrated? `ld3 serve` migrates an embedded database; with a broker use `ld3 serve --migrate`)",
              file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.action == "create":
        k = touched[0]
        print(plaintext, flush=True)
        print(f"key {k['id']} {k['name']!r} ({k['prefix']}...) with scopes {', '.join(k['scopes'])} in {where}: "
              "the key is shown this once, store it now (only its hash is kept)", file=sys.stderr)
    elif args.action == "list":
        print(json.dumps(touched, indent=1) if args.json else format_keys(touched))
    else:
        from api.auth import KEY_CACHE_TTL_S

        k = touched[0]
        print(f"key {k['id']} {k['name']!r} ({k['prefix']}...) revoked at {k['revoked_at'][:19]} UTC")
        print(f"note: a running API process that verified this key in the last {KEY_CACHE_TTL_S:g} s accepts it until "
              "that cache entry expires (DELETE /keys/ID through the API drops it at once in that process)", file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("keys", help="create, list or revoke API keys (on the server: straight on the database)")
    ksub = k.add_subparsers(dest="action", required=True)
    kc = ksub.add_parser("create", help="a new key; prints its plaintext (shown this once)")
    kc.add_argument("--name", required=True, help="who or what the key is for")
    kc.add_argument("--scopes", nargs="+", required=True, metavar="SCOPE",
                    help="one or more of: schedules:read jobs:submit admin")
    kl = ksub.add_parser("list", help="every key (revoked ones too); no hashes")
    kl.add_argument("--json", action="store_true")
    kr = ksub.add_parser("revoke", help="revoke key ID (from `ld3 keys list`)")
    kr.add_argument("id", type=_key_id)
    for a in (kc, kl, kr):
        a.add_argument("--database-url", help="overrides LD3_DATABASE_URL")
    k.set_defaults(run=cmd_keys)
