"""The reply as a reviewer would post it (issue 14 item 4): the conclusion derived from
the results, the findings with the seed's lines, the matrix without shared rows, lore
links, and `gmemlab reply`, an RFC 5322 message that two runs write byte for byte."""

import email
import email.policy
import os
import subprocess
import sys

import pytest

from gmemlab.explore import Bounds
from gmemlab.explore.compare import compare
from gmemlab.invariants import ALWAYS
from gmemlab.model import vocab
from gmemlab.model.proposals import USERSPACE_CONVERTS, Proposal
from gmemlab.render.reply import (SUBJECT, conclusion, findings, is_link_line, reply_message,
                                  reply_text, seed_quote, too_wide)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MSGID = "<20260407000000.12345-1-michael.roth@amd.com>"
VARIANT = "userspace-converts-private"


def _run(*args, seed="0"):
    env = dict(os.environ, PYTHONHASHSEED=seed)
    return subprocess.run([sys.executable, "-m", "gmemlab", "reply", *args], capture_output=True,
                          cwd=ROOT, env=env)


def _body_lines(msg):
    return msg.get_content().splitlines()


@pytest.mark.parametrize("pages", [1, 2])
def test_conclusion_names_who_breaks_te_private_on_snp(pages):
    t = compare("snp", "v8", Bounds(pages=pages))
    c = conclusion(t).replace("\n", " ")
    assert "userspace-converts breaks te_private_implies_kvm_private (2 calls)" in c
    assert f"private-first and populate-converts keep all {len(ALWAYS)} invariants" in c
    fs = {f["invariant"]: f for f in findings(t)}
    assert fs["te_private_implies_kvm_private"]["proposal"] == "userspace-converts"
    text = reply_text(t)
    assert text.startswith(conclusion(t))
    # the seed's line the finding answers is quoted
    assert "> private as tracked by KVM [...] by trusted entity" in text
    assert "> expecting the pages to be marked private in advance of" in text
    assert "needs no knob" in text


def test_the_matrix_leaves_out_rows_every_proposal_shares():
    text = reply_text(compare("snp", "v8", Bounds(pages=1)))
    rows = [line.split()[0] for line in text.splitlines() if " holds " in line]
    assert "te_private_implies_kvm_private" in rows and "private_not_pinned" not in rows
    assert "left out: private_not_host_mapped, private_not_pinned" in text.replace("\n", " ")


def test_links_are_lore_and_unbroken():
    t = compare("tdx", "v7", Bounds(pages=1))
    text = reply_text(t, in_reply_to=MSGID)
    links = [line.strip() for line in text.splitlines() if is_link_line(line)]
    assert "https://lore.kernel.org/r/20260407000000.12345-1-michael.roth@amd.com" in links
    assert "https://lore.kernel.org/r/20260522-gmem-inplace-conversion-v7-0-2f0fae496530@google.com" in links
    assert "<" not in "".join(links) and too_wide(text) == [] and text.isascii()


def test_the_conclusion_follows_the_results():
    before = conclusion(compare("snp", "v8", Bounds(pages=1), proposals=vocab.proposal_names()))
    vocab.register(Proposal.derive(USERSPACE_CONVERTS, name=VARIANT,
                                   claim="userspace-converts, but populate wants a private page",
                                   source="a test variant", populate_wants_private=True))
    try:
        t = compare("snp", "v8", Bounds(pages=1), proposals=vocab.proposal_names())
        after = conclusion(t).replace("\n", " ")
        text = reply_text(t)
    finally:
        vocab.unregister(VARIANT)
    assert after != before.replace("\n", " ") and VARIANT not in before
    keepers = after.split(" keep all ")[0]
    assert VARIANT in keepers and "userspace-converts breaks te_private_implies_kvm_private" in after
    assert f"{VARIANT} breaks" not in after
    assert VARIANT in text and too_wide(text) == []


def test_the_conclusion_when_nothing_breaks():
    t = compare("sw_protected", "v8", Bounds(pages=1))
    assert f"every proposal keeps all {len(ALWAYS)} invariants" in conclusion(t).replace("\n", " ")
    assert "No invariant breaks" in reply_text(t)


def test_a_knob_the_counterexample_does_not_need_is_named_as_such():
    t = compare("snp", "v8", Bounds(pages=1), knobs={"allocation_failures": True})
    assert "needs none of the knobs on (--allocation-failures)" in reply_text(t).replace("\n", " ")


def test_seed_quote():
    assert seed_quote("Michael Roth's alternative in 'Re: [PATCH RFC v4 10/44] ...' (2026-04-07): "
                      "'require userspace to convert'") == "require userspace to convert"
    assert seed_quote("docs/domain.md") is None


def test_the_message_parses_and_keeps_72_columns():
    t = compare("snp", "v8", Bounds(pages=2))
    raw = reply_message(t, in_reply_to=MSGID)
    msg = email.message_from_string(raw, policy=email.policy.default)
    assert msg["Subject"] == SUBJECT
    assert msg["In-Reply-To"] == MSGID and msg["References"] == MSGID
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    assert msg["MIME-Version"] == "1.0" and msg["Content-Transfer-Encoding"] in ("7bit", "8bit")
    assert "Date" not in msg and "From" not in msg
    lines = _body_lines(msg)
    assert [line for line in lines if len(line) > 72 and not is_link_line(line)] == []
    assert msg.get_content() == reply_text(t, in_reply_to=MSGID)


def test_cli_writes_the_same_bytes_twice(tmp_path):
    args = ["--platform", "snp", "--pages", "1", "--in-reply-to", MSGID.strip("<>")]
    a, b = _run(*args, seed="1"), _run(*args, seed="2")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout
    msg = email.message_from_bytes(a.stdout, policy=email.policy.default)
    assert msg["In-Reply-To"] == MSGID and msg["References"] == MSGID
    assert msg["Subject"] == SUBJECT and msg.get_content_type() == "text/plain"
    assert b"base64" not in a.stdout and b"=\n" not in a.stdout
    out = tmp_path / "reply.eml"
    r = _run(*args, "--subject", "Re: other", "--from", "A <a@example.org>", "--date",
             "2026-04-08T10:00:00", "-o", str(out))
    assert r.returncode == 0 and r.stdout == b"", r.stderr
    m = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert (m["Subject"], m["From"], m["Date"]) == ("Re: other", "A <a@example.org>",
                                                    "Wed, 08 Apr 2026 10:00:00 +0000")


def test_cli_reply_with_a_variants_file(tmp_path):
    f = tmp_path / "v.py"
    f.write_text("from gmemlab import Proposal\nfrom gmemlab.model.proposals import USERSPACE_CONVERTS\n"
                 f"V = Proposal.derive(USERSPACE_CONVERTS, name={VARIANT!r}, claim='c', source='s',\n"
                 "                   populate_wants_private=True)\n")
    r = _run("--pages", "1", "--variants", str(f))
    assert r.returncode == 0, r.stderr
    body = email.message_from_bytes(r.stdout, policy=email.policy.default).get_content()
    assert VARIANT in body.split("\n\n")[0]


@pytest.mark.parametrize("args", [["--in-reply-to", "no id"], ["--date", "yesterday"],
                                  ["--proposal", "nope"], ["--pages", "0"]])
def test_cli_refuses_bad_input(args):
    r = _run("--pages", "1", *args)
    assert r.returncode == 2 and r.stdout == b"" and b"Traceback" not in r.stderr
