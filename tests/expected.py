"""What the emulator holds, in the shape each stream should deliver (ids per stream)."""

from __future__ import annotations

from ashby_emulator import Emulator

from tap_ashby.endpoints import ENDPOINTS

# Streams whose rows are keyed on something other than their own table's ids.
SPECIAL = {
    "interviewer_pool_members": "interviewer_pools",
    "api_key_info": None,
    "candidate_files": None,
    "report_results": None,
}


def key_of(stream: str) -> str:
    """The field that identifies a row of ``stream`` (the last primary key)."""
    return ENDPOINTS[stream].primary_keys[-1]


def expected_ids(emu: Emulator, stream: str) -> set[str]:
    """Ids the tap must deliver for ``stream`` after a full pass."""
    org = emu.org
    if stream == "api_key_info":
        return {"tap-ashby emulator key"}
    if stream == "api_versions":
        return set(emu.api.settings.versions)
    if stream == "email_senders":
        senders = org.tables["email_senders"]
        return {senders.get(i)["email"] for i in senders.live_indices()}
    if stream == "candidate_files":
        cands = org.tables["candidates"]
        return {
            h["handle"]
            for i in cands.live_indices()
            for h in (cands.get(i) or {}).get("fileHandles") or []
        }
    if stream == "report_results":
        return set()
    if stream == "notetaker_transcripts":
        events = org.tables["interview_events"]
        return {
            e["notetakerTranscriptId"]
            for i in events.live_indices()
            if (e := events.get(i)) and e.get("notetakerTranscriptId")
        }
    if stream == "job_interview_plans":
        return set(org.live_ids("jobs"))
    table = SPECIAL.get(stream, stream)
    return set(org.live_ids(table))


def delivered_ids(records: list[dict], stream: str) -> set[str]:
    return {r[key_of(stream)] for r in records}
