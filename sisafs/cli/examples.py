"""Examples for every subcommand, as the man page shows them (sisafs/cli/manpage.py);
a test checks that each command has some, so a new command cannot ship without."""

from __future__ import annotations

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "init": [
        ("sisafs init ~/Photos.vault", "create a vault at the default level (asks for a "
         "passphrase twice)"),
        ("sisafs init ~/Photos.vault --level 2 --recovery", "blur instead of noise, and a "
         "recovery key printed once"),
    ],
    "mount": [
        ("mkdir -p ~/Photos && sisafs mount ~/Photos.vault ~/Photos", "mount; returns once "
         "the mount is up and keeps serving in the background"),
        ("sisafs mount ~/Photos.vault ~/Photos --foreground --extpass 'pass show photos'",
         "stay in the foreground (Ctrl-C drains and unmounts; a second Ctrl-C stops at once, "
         "exit 21)"),
    ],
    "unmount": [
        ("sisafs unmount ~/Photos", "wait until every queued photo is protected and on disk, "
         "showing progress on a terminal, then unmount (exit 20 while a file is open there)"),
    ],
    "status": [
        ("sisafs status ~/Photos", "queued, running, done and failed, and each path's state"),
        ("sisafs status ~/Photos --watch", "a live view with the rate and an ETA"),
        ("sisafs status ~/Photos --json | jq .failed", "for scripts"),
    ],
    "upgrade": [
        ("sisafs upgrade ~/Photos.vault", "seal the settings of a vault made by an older "
         "version, so a hand edit of sisafs.conf is refused, and build its vault index; "
         "asks for the passphrase"),
    ],
    "keygen": [
        ("sisafs keygen key.bin", "a new random 256-bit key file, mode 0600"),
    ],
    "protect": [
        ("sisafs protect in.jpg out.jpg --keyfile key.bin --level 4", "one photo with a key "
         "file"),
        ("sisafs protect in.jpg out.jpg --vault ~/Photos.vault", "one photo exactly as the "
         "mount would store it: the vault's level, preferences and enrolled people"),
        ("sisafs protect -r ~/Pictures --vault ~/Photos.vault", "a whole tree into an "
         "unmounted vault; resumable"),
    ],
    "restore": [
        ("sisafs restore out.jpg back.jpg --keyfile key.bin", "the original bytes (same "
         "sha256)"),
    ],
    "inspect": [
        ("sisafs inspect out.jpg", "format, protection path and the regions altered, with "
         "why; no key needed"),
        ("sisafs inspect out.jpg --json | jq '.regions[].why'", "for scripts"),
    ],
    "people add": [
        ("sisafs people add me ~/me-2023.jpg ~/me-2024.jpg --vault ~/Photos.vault",
         "enrol from photos that show exactly one face each (a group photo is refused)"),
    ],
    "people list": [("sisafs people list --vault ~/Photos.vault", "enrolled names")],
    "people remove": [("sisafs people remove me --vault ~/Photos.vault", "forget a person")],
    "passwd": [
        ("sisafs passwd ~/Photos.vault", "a new passphrase; only the wrapped key changes"),
    ],
    "recovery": [
        ("sisafs recovery ~/Photos.vault", "add or replace the recovery key (printed once)"),
        ("sisafs mount ~/Photos.vault ~/Photos --recovery-key", "unlock with it"),
    ],
    "info": [
        ("sisafs info ~/Photos.vault", "version, flags, KDF, level, detectors; no secrets"),
    ],
    "config": [
        ("sisafs config ~/Photos.vault --level 2", "change the level (from the next mount)"),
        ("sisafs config ~/Photos.vault --never me", "never alter the enrolled person 'me' "
         "(a name nobody enrolled is refused)"),
        ("sisafs config ~/Photos.vault --dir Family --level 4", "a stricter level for one "
         "folder"),
    ],
    "preview": [
        ("sisafs preview ~/DCIM/IMG_0001.jpg", "IMG_0001.preview.png: the original and levels "
         "1 to 5, regions outlined"),
        ("sisafs preview ~/DCIM/*.jpg --out previews --vault ~/Photos.vault", "with the "
         "vault's settings and people, one picture per photo in previews/"),
    ],
    "report": [
        ("sisafs report ~/Photos.vault --html report.html --passfile pw", "what the disk "
         "shows beside the originals"),
        ("sisafs report ~/Photos --png sheet.png", "a contact sheet, from a mount"),
    ],
    "fsck": [
        ("sisafs fsck ~/Photos.vault", "authenticate every file and check it against the "
         "vault index; exit 18 names each damaged, rolled-back, swapped, deleted or added "
         "file"),
        ("sisafs fsck ~/Photos.vault --rebuild-index", "after restoring the vault from a "
         "backup on purpose: adopt its files as they are now"),
    ],
}
