"""How Asterisk and FreeSWITCH read a prompt URL out of a dialplan, ported from their C
source line for line, so tests can say what a PBX would fetch and which file type it
would give the answer.

- `agi_args`: Asterisk res/res_agi.c `parse_args` (an AGI command line into words).
- `app_args`: Asterisk main/app.c `__ast_app_separate_args` as AST_STANDARD_APP_ARGS calls
  it (split at ',', double quotes and backslashes removed).
- `playback_files`: Asterisk apps/app_playback.c, `playback_exec`: the first argument split
  by main/utils.c `ast_strsep(&back, '&', AST_STRSEP_STRIP | AST_STRSEP_TRIM)`.
- `freeswitch_extension`: FreeSWITCH mod_http_cache.c `find_extension`.
"""

from __future__ import annotations

_BLANK = "".join(chr(c) for c in range(33))  # ast_strip: every byte below 33


def agi_args(line: str) -> list[str]:
    """The words of an AGI command: double quotes group and are removed, a backslash makes
    the next character literal; single quotes are ordinary characters."""
    args: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for c in line:
        if c == '"' and not escaped:
            quoted = not quoted
            if quoted and current is None:
                current = []
                args.append("")
            continue
        if c in " \t" and not quoted and not escaped:
            if current is not None:
                args[-1] = "".join(current)
            current = None
            continue
        if c == "\\" and not escaped:
            escaped = True
            continue
        if current is None:
            current = []
            args.append("")
        current.append(c)
        escaped = False
    if current is not None:
        args[-1] = "".join(current)
    return args


def app_args(data: str, most: int) -> list[str]:
    """An application's argument string split at ',' outside (), [] and double quotes, the
    double quotes and backslashes removed, into at most `most` arguments (the last one is
    the rest of the string, as it is)."""
    args: list[str] = []
    i, n = 0, len(data)
    paren = bracket = 0
    quote = False
    delimiter = -1
    while i < n and len(args) < most - 1:
        out: list[str] = []
        while i < n:
            c = data[i]
            if c == "(":
                paren += 1
            elif c == ")":
                paren = max(paren - 1, 0)
            elif c == "[":
                bracket += 1
            elif c == "]":
                bracket = max(bracket - 1, 0)
            elif c == '"':
                quote = not quote
                i += 1
                continue  # removed
            elif c == "\\":
                out.append(data[i + 1:i + 2])  # removed; the next one is taken as it is
                i += 2
                continue
            elif c == "," and not paren and not quote and not bracket:
                delimiter = i
                i += 1
                break
            out.append(c)
            i += 1
        args.append("".join(out))
    if i < n or (i > 0 and delimiter == i - 1):
        args.append(data[i:])
    return args


def _strip_quoted(s: str) -> str:
    s = s.strip(_BLANK)
    if s and s[0] in "'\"" and s[-1] == s[0]:
        return s[1:-1]
    return s


def _strsep_all(s: str, sep: str) -> list[str]:
    """Every piece ast_strsep(…, STRIP | TRIM) gives, in order: split at `sep` outside
    single and double quotes (nested), each piece stripped of blanks and of the quotes
    around it."""
    pieces: list[str] = []
    rest: str | None = s
    while rest:
        stack: list[str] = []
        i, cut = 0, -1
        while i < len(rest):
            if rest[i] == "\\":
                i += 2  # the escaped character is skipped; the one after it is looked at
                if i >= len(rest):
                    break
            c = rest[i]
            if c in "'\"":
                if stack and stack[-1] == c:
                    stack.pop()
                else:
                    stack.append(c)
            if c == sep and not stack:
                cut = i
                break
            i += 1
        piece, rest = (rest[:cut], rest[cut + 1:]) if cut >= 0 else (rest, None)
        stripped = _strip_quoted(piece)
        pieces.append(stripped.strip(_BLANK) or stripped)
    return pieces


def playback_files(data: str) -> list[str]:
    """What Playback(data) plays, file by file (URLs fetched by res_http_media_cache)."""
    filenames = app_args(data, 2)[0]
    return _strsep_all(filenames, "&")


def freeswitch_extension(url: str) -> str | None:
    """The file type mod_http_cache gives a URL's download: the text after the last '.'
    that follows the last '/' (or '\\'), up to the next '?' or '#'."""
    length = 0
    for i in range(len(url) - 1, 0, -1):
        c = url[i]
        if c in "/\\":
            return None
        if c in "?#":
            length = 0
        elif c == ".":
            return url[i + 1:i + 1 + length]
        else:
            length += 1
    return None
