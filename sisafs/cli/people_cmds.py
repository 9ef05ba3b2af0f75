"""People the vault knows by face: `sisafs people add|list|remove --vault V`.

Enrolled faces are stored as embeddings sealed with the vault's state key in
`.sisafs/people.bin`; names and embeddings never touch the disk in plain. A mount reads
the store when it starts, so changes apply from the next mount.
"""

from __future__ import annotations

from pathlib import Path

from sisafs.cli.common import passphrase_args, unlock
from sisafs.errors import InputError, UsageError

LABEL = b"people"  # associated data binding the sealed blob to its purpose


def _open_store(args):
    from sisafs.people import PeopleStore
    from sisafs.vault.keys import VaultKeys
    from sisafs.vault.layout import PEOPLE_FILE, PRIVATE_DIR

    vault = Path(args.vault)
    _, master = unlock(vault, args)
    keys = VaultKeys.from_master(master)
    path = vault / PRIVATE_DIR / PEOPLE_FILE
    blob = path.read_bytes() if path.exists() else None
    store = PeopleStore.load(blob, lambda b: keys.open_state(b, LABEL))
    return store, keys, path


def _save(store, keys, path: Path) -> None:
    from sisafs.vault.config import atomic_write

    path.parent.mkdir(mode=0o700, exist_ok=True)
    atomic_write(path, store.dump(lambda b: keys.seal_state(b, LABEL)), mode=0o600)


def cmd_add(args) -> int:
    from PIL import Image

    from sisafs.people import PeopleError

    store, keys, path = _open_store(args)
    images = []
    for p in args.photos:
        try:
            images.append(Image.open(p))
        except OSError as e:
            raise InputError(f"{p}: cannot open as an image ({e})") from None
    try:
        n = store.add(args.name, images)
    except PeopleError as e:
        raise InputError(str(e)) from None
    _save(store, keys, path)
    print(f"Enrolled {n} face(s) of {args.name!r}; applies from the next mount.")
    return 0


def cmd_list(args) -> int:
    store, _, _ = _open_store(args)
    for name in store.names():
        print(name)
    return 0


def cmd_remove(args) -> int:
    from sisafs.people import PeopleError

    store, keys, path = _open_store(args)
    try:
        store.remove(args.name)
    except PeopleError as e:
        raise UsageError(str(e)) from None
    _save(store, keys, path)
    print(f"Removed {args.name!r}; applies from the next mount.")
    return 0


def register(sub) -> None:
    p = sub.add_parser("people", help="enrol, list and remove people known by face")
    psub = p.add_subparsers(dest="people_command", required=True, metavar="ACTION")
    for name, func, hlp in (("add", cmd_add, "enrol NAME from one or more photos of them"),
                            ("list", cmd_list, "list enrolled names"),
                            ("remove", cmd_remove, "forget NAME")):
        s = psub.add_parser(name, help=hlp)
        s.add_argument("--vault", required=True)
        if name in ("add", "remove"):
            s.add_argument("name")
        if name == "add":
            s.add_argument("photos", nargs="+", metavar="PHOTO")
        passphrase_args(s)
        s.set_defaults(func=func)
