"""Outcomes as short human text, shared by graphs, lanes and email text.

>>> outcome_text({"ret": "EAGAIN", "error_offset": 8192})
'EAGAIN error_offset=0x2000'
>>> outcome_text({"ok": True, "value": 65})
"ok value='A'"
"""


def value_text(v) -> str:
    """A byte value as text: printable ASCII quoted, ``?`` for not-the-plaintext."""
    if v is None:
        return "?"
    return repr(chr(v)) if 0x21 <= v <= 0x7E else str(v)


def outcome_text(out: dict) -> str:
    if "ret" in out:
        r = "0" if out["ret"] == 0 else str(out["ret"])
        if "error_offset" in out:
            r += f" error_offset={out['error_offset']:#x}"
        if "done" in out:
            r += f" done={out['done']}"
        return r
    for k in ("signal", "exit", "exception"):
        if k in out:
            return out[k]
    return "ok" + (f" value={value_text(out['value'])}" if "value" in out else "")
