"""Generate the man page and docs/exit-codes.md from the argparse parser and
sisafs.errors, so the documentation cannot drift from the code (`make man`; a test
regenerates both and compares). A tiny generator rather than argparse-manpage: one less
dependency, and the output does not depend on the terminal width or the date.

    python -m sisafs.cli.manpage docs/man/sisafs.1 docs/exit-codes.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sisafs import __version__, errors


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.splitlines())


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, list[str], str,
                                                                   argparse.ArgumentParser]]:
    """(name, aliases, help, parser) per subcommand, in registration order."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in action._choices_actions}
    seen: dict[int, tuple[str, list[str], str, argparse.ArgumentParser]] = {}
    for name, sub in action.choices.items():
        if id(sub) in seen:
            seen[id(sub)][1].append(name)
        else:
            seen[id(sub)] = (name, [], helps.get(name, ""), sub)
    return list(seen.values())


def _option(a: argparse.Action) -> str:
    if a.option_strings:
        names = ", ".join(f"\\fB{_roff(o)}\\fR" for o in a.option_strings)
        if a.nargs != 0:
            names += f" \\fI{_roff(a.metavar or a.dest.upper())}\\fR"
    else:
        names = f"\\fI{_roff(a.metavar or a.dest.upper())}\\fR"
    return names


def _usage(name: str, sub: argparse.ArgumentParser) -> str:
    parts = [f"\\fBsisafs {name}\\fR"]
    for a in sub._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        if a.option_strings:
            flag = f"\\fB{_roff(a.option_strings[-1] if len(a.option_strings[-1]) > 2 else a.option_strings[0])}\\fR"  # noqa: E501
            if a.nargs != 0:
                flag += f" \\fI{_roff(a.metavar or a.dest.upper())}\\fR"
            parts.append(f"[{flag}]")
        else:
            parts.append(f"\\fI{_roff(a.metavar or a.dest.upper())}\\fR")
    return " ".join(parts)


def _examples(name: str) -> list[str]:
    from sisafs.cli.examples import EXAMPLES

    out = []
    for i, (line, what) in enumerate(EXAMPLES.get(name, [])):
        out += [".PP" if i else ".PP\n\\fIExamples:\\fR", ".RS 4", ".nf",
                f"\\fB{_roff(line)}\\fR", ".fi", _roff(what[0].upper() + what[1:] + "."),
                ".RE"]
    return out


def _command(name: str, aliases: list[str], hlp: str,
             sub: argparse.ArgumentParser) -> list[str]:
    """One .SS per command; a command with actions (people) gets one per action."""
    nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
    if nested:
        out = []
        for child, child_aliases, child_help, child_sub in _subcommands(sub):
            out += _command(f"{name} {child}", child_aliases, child_help, child_sub)
        return out
    title = name + (f" (alias: {', '.join(aliases)})" if aliases else "")
    out = [f".SS {_roff(title)}", _usage(name, sub), ".PP", _roff(hlp.rstrip(".") + ".")]
    if sub.description:
        out += [".PP", _roff(sub.description)]
    for a in sub._actions:
        if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS:
            continue
        text = a.help or ("required" if not a.option_strings else "")
        if a.choices and a.option_strings:
            text = f"{text} (one of: {', '.join(map(str, a.choices))})".strip()
        out += [".TP", _option(a), _roff(text or "enable")]
    return out + _examples(name)


def render_man(parser: argparse.ArgumentParser) -> str:
    out = [f'.TH SISAFS 1 "" "sisafs {__version__}" "User Commands"',
           ".SH NAME", "sisafs \\- " + _roff("a FUSE filesystem that keeps a photo library "
                                              "private"),
           ".SH SYNOPSIS", "\\fBsisafs\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
           ".SH DESCRIPTION", _roff(parser.description or ""),
           ".SH COMMANDS"]
    for name, aliases, hlp, sub in _subcommands(parser):
        out += _command(name, aliases, hlp, sub)
    out += [".SH EXIT STATUS", ".TS", "tab(|);", "r l."]
    out += [f"{code}|{_roff(text)}" for code, text in errors.EXIT_CODES.items()]
    out += [".TE", ".SH FILES", ".TP", "\\fIVAULT\\fB/sisafs.conf\\fR",
            _roff("the vault config: feature flags, KDF parameters, wrapped master key "
                  "slots, settings (see sisafs info, sisafs config)."),
            ".TP", "\\fIVAULT\\fB/.sisafs/\\fR",
            _roff("private state: people store, log, dirty marker."),
            ".SH SEE ALSO", "fusermount3(1), systemd-ask-password(1), "
            "docs/howto.md, docs/threat\\-model.md"]
    return "\n".join(out) + "\n"


def render_exit_codes() -> str:
    by_code = {cls.exit_code: cls.__name__ for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, errors.SisafsError)}
    rows = "\n".join(f"| {code} | `{by_code.get(code, '-')}` | {text} |"
                     for code, text in errors.EXIT_CODES.items())
    return ("# sisafs exit codes\n\n"
            "<!-- Generated by `make man` from sisafs/errors.py; do not edit by hand. -->\n\n"
            "Every failure a user can cause has its own stable exit code, so scripts can "
            "tell a wrong passphrase from a missing vault. Codes never change meaning and "
            "new ones are only added at the end. `sisafs --help` prints the same table.\n\n"
            "| code | exception | meaning |\n| ---: | --- | --- |\n" + rows + "\n")


def main(argv: list[str] | None = None) -> int:
    from sisafs.cli import build_parser

    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m sisafs.cli.manpage MAN_OUT EXIT_CODES_MD_OUT", file=sys.stderr)
        return 2
    man, md = map(Path, args)
    man.parent.mkdir(parents=True, exist_ok=True)
    man.write_text(render_man(build_parser()))
    md.write_text(render_exit_codes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
