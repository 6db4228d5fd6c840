"""The Gradio page: three tabs (Say, Fit a person, Batch) over ui_say / ui_fit / ui_batch.

Only layout and event wiring live here; the work is the CLI's (see those modules). Every handler
turns an AvatarError into the CLI's one-line "error: ..." in the tab's status line; anything else
is logged with its traceback on the server and shown as one line.
"""
from __future__ import annotations

import html
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import gradio as gr

from avatar.errors import AvatarError
from pipelines import ui_background, ui_batch, ui_files, ui_fit, ui_say

POLL_S = 2.0
HEAD_MOTIONS = [("follow the target video", "target"), ("still (one frame)", "still")]
BLINKS = [("auto", "auto"), ("the target video's", "target"), ("synthetic", "synthetic"),
          ("none (eyes open)", "none")]
IMAGE_BUTTONS = ["download", "fullscreen"]          # no "share" (it is for hosted pages)
NO_WATERMARK_LABEL = ("Leave out the visible SYNTHETIC label (the video's metadata tag and "
                      "side-car still say it is synthetic)")


def error_line(e: BaseException) -> str:
    """The one line a user sees: the CLI's message for a user mistake, else a short notice."""
    if isinstance(e, AvatarError):
        return f"error: {e}"
    traceback.print_exception(e, file=sys.stderr)
    return f"error: internal error ({type(e).__name__}: {str(e)[:200]}); details in the server log"


def bars_html(bars: dict) -> str:
    """One labelled bar per stage, as the CLI's progress bars show them."""
    if not bars:
        return ""
    rows = []
    for name, (done, total) in bars.items():
        if total:
            bar = f'<progress max="100" value="{100.0 * done / total:.0f}"></progress>'
            count = f"{done}/{total}"
        else:                                             # no known total: a time budget
            bar, count = "<progress></progress>", str(done)
        rows.append(f'<div class="stage"><span>{html.escape(name)}</span>{bar}'
                    f'<span>{count}</span></div>')
    return '<div class="stages">' + "".join(rows) + "</div>"


CSS = """
.stages .stage {display: grid; grid-template-columns: 9em 1fr 6em; gap: .5em; align-items: center}
.stages progress {width: 100%}
#say-status, #fit-status, #batch-status {min-height: 1.5em}
"""


def build(options: ui_say.ServerOptions) -> gr.Blocks:
    with gr.Blocks(title="avatar-toolkit", analytics_enabled=False,
                   delete_cache=(3600, 24 * 3600)) as page:
        gr.Markdown("## avatar-toolkit: offline talking-head avatars\nEvery video made here is "
                    "marked as synthetic: a metadata tag, a side-car JSON and a visible label "
                    "(left out only when you tick the box that says so).")
        with gr.Tab("Say", id="say"):
            say_person = say_tab(options)
        with gr.Tab("Fit a person", id="fit"):
            fit_shown = fit_tab(options)
        with gr.Tab("Batch", id="batch"):
            batch_person, batch_shown = batch_tab(options)
        page.load(refresh_lists, None, [say_person, batch_person, fit_shown, batch_shown],
                  show_progress="hidden")
    return page


def refresh_lists():
    """On every page load: persons (a fit may have finished since the server started), fits and
    batches; the newest fit is shown at once, so a reopened page is back on a running fit."""
    persons, fits = ui_files.person_choices(), ui_fit.fit_names()
    return (gr.Dropdown(choices=persons), gr.Dropdown(choices=persons),
            gr.Dropdown(choices=fits, value=fits[0] if fits else None),
            gr.Dropdown(choices=ui_batch.batch_requests()))


# --- say -------------------------------------------------------------------------------------

def say_tab(options: ui_say.ServerOptions) -> gr.Dropdown:
    persons = ui_files.person_choices()
    first = "demo" if "demo" in persons else (persons[0] if persons else None)
    with gr.Row():
        with gr.Column(scale=2):
            text = gr.Textbox(label="Text to speak", lines=3, elem_id="say-text",
                              placeholder="Hello. This is a synthetic video.")
            audio = gr.Audio(label="... or speech: upload a file or record with the microphone",
                             sources=["upload", "microphone"], type="filepath", elem_id="say-audio")
            voice = gr.Dropdown(ui_files.voice_choices(), value="", label="Voice (for text)",
                                elem_id="say-voice")
            with gr.Row():
                head = gr.Radio(HEAD_MOTIONS, value="target", label="Head motion")
                blink = gr.Radio(BLINKS, value="auto", label="Blinks")
            scale = gr.Slider(0, 3, value=1.0, step=0.05, label="Expression scale (mouth "
                              "amplitude, 1 = as predicted)")
            no_mark = gr.Checkbox(False, label=NO_WATERMARK_LABEL, elem_id="say-no-watermark")
            go = gr.Button("Generate", variant="primary", elem_id="say-generate")
        with gr.Column(scale=1):
            person = gr.Dropdown(persons, value=first, label="Person", elem_id="say-person")
            thumb = gr.Image(ui_files.person_thumbnail(first), label="Person (tracked frames)",
                             interactive=False, buttons=IMAGE_BUTTONS, elem_id="say-thumb")
    status = gr.Markdown(elem_id="say-status")
    bars = gr.HTML(elem_id="say-bars")
    video = gr.Video(label="Video", interactive=False, height=360, buttons=["download"],
                     elem_id="say-video")
    files = gr.File(label="Download: video and side-car", file_count="multiple",
                    interactive=False, elem_id="say-files")
    person.change(ui_files.person_thumbnail, person, thumb)
    go.click(lambda *a: (yield from run_say(options, *a)),
             [text, audio, person, voice, head, blink, scale, no_mark],
             [status, bars, video, files], concurrency_limit=1, concurrency_id="say",
             show_progress="hidden")
    return person


def run_say(options, text, audio, person, voice, head, blink, scale, no_mark):
    """One click on Generate, as a stream of (status line, stage bars, video, downloads): the
    request is checked first (a mistake is one line at once), then the pipeline runs in a thread
    while its progress events redraw the bars."""
    try:
        request = ui_say.SayRequest(text or "", audio or None, person or "", voice or "", head,
                                    blink, float(scale), bool(no_mark))
        prepared = ui_say.prepare(request, options)
    except Exception as e:  # noqa: BLE001 - every failure becomes one line on the page
        yield error_line(e), "", None, None
        return
    events: dict = {}
    with ThreadPoolExecutor(1, thread_name_prefix="avatar-say") as pool:
        job = pool.submit(ui_say.make_clip, prepared, lambda s, d, t: events.__setitem__(s, (d, t)))
        while not job.done():
            yield "working ...", bars_html(events), gr.skip(), gr.skip()
            time.sleep(0.25)
    try:
        clip = job.result()
    except Exception as e:  # noqa: BLE001
        yield error_line(e), bars_html(events), None, None
        return
    yield (f"done: {clip.summary}", bars_html(events), str(clip.video),
           [str(clip.video), str(clip.sidecar)])


# --- fit a person ----------------------------------------------------------------------------

def fit_tab(options: ui_say.ServerOptions) -> gr.Dropdown:
    with gr.Row():
        with gr.Column():
            clips = gr.File(label="Clips of one person talking (same room, framing, light)",
                            file_count="multiple", file_types=["video"], elem_id="fit-clips")
            name = gr.Textbox(label="Person name (letters, digits, - _ .)", elem_id="fit-name")
            consent = gr.Textbox(label="Consent: who is shown, and that they agreed to a "
                                 "synthetic model of them (stored in person.json)", lines=2,
                                 elem_id="fit-consent")
            minutes = gr.Number(60, label="Renderer training budget in minutes (0 = tracking "
                                "and face model only)", minimum=0, elem_id="fit-minutes")
            with gr.Row():
                start = gr.Button("Start fit", variant="primary", elem_id="fit-start")
                stop = gr.Button("Stop (finished work is kept)", elem_id="fit-stop")
        with gr.Column():
            shown = gr.Dropdown(ui_fit.fit_names(), value=None, label="Fit to show (fits keep "
                                "running when the page is closed)", elem_id="fit-shown")
            status = gr.Markdown(elem_id="fit-status")
            bars = gr.HTML(elem_id="fit-bars")
            log = gr.Textbox(label="Log (the command's last lines)", lines=6, max_lines=24,
                             interactive=False, elem_id="fit-log")
    with gr.Row():
        sheet = gr.Image(label="Contact sheet", interactive=False, buttons=IMAGE_BUTTONS,
                         elem_id="fit-sheet")
        overlay = gr.Video(label="Tracking overlay", interactive=False, buttons=["download"],
                           elem_id="fit-overlay")
        curve = gr.Image(label="Training curve", interactive=False, buttons=IMAGE_BUTTONS,
                         elem_id="fit-curve")
        samples = gr.Image(label="Held-out frames: real | rendered | difference",
                           interactive=False, buttons=IMAGE_BUTTONS, elem_id="fit-samples")
    seen = gr.State({})
    views = [status, bars, log, sheet, overlay, curve, samples, seen]
    start.click(lambda *a: start_fit(options, *a), [clips, name, consent, minutes],
                [status, shown])
    stop.click(stop_fit, shown, status)
    shown.change(show_fit, [shown, gr.State({})], views, show_progress="hidden")
    gr.Timer(POLL_S).tick(show_fit, [shown, seen], views, show_progress="hidden")
    return shown


def start_fit(options, clips, name, consent, minutes):
    try:
        ui_fit.start_fit(clips, name or "", consent or "", minutes, options.device,
                         options.max_upload_mb)
    except Exception as e:  # noqa: BLE001
        return error_line(e), gr.skip()
    name = name.strip()
    return (f"started the fit of {name}; it keeps running when this page is closed",
            gr.Dropdown(choices=ui_fit.fit_names(), value=name))


def stop_fit(name):
    try:
        if not name:
            raise AvatarError("no fit is shown; pick one under 'Fit to show'")
        stopped = ui_fit.stop_fit(name)
    except Exception as e:  # noqa: BLE001
        return error_line(e)
    return f"stopping the fit of {name} ..." if stopped else f"the fit of {name} is not running"


def show_fit(name, seen):
    """The shown fit's status, bars and log; previews only when a file changed (so a playing
    overlay video is not restarted on every poll)."""
    if not name:
        return "", "", "", *[gr.skip()] * 4, seen
    try:
        view = ui_fit.fit_view(name)
    except Exception as e:  # noqa: BLE001
        return error_line(e), "", "", *[gr.skip()] * 4, seen
    seen = dict(seen or {})
    previews = []
    for key, path in (("sheet", view.contact_sheet), ("overlay", view.overlay),
                      ("curve", view.curve), ("samples", view.samples)):
        stamp = f"{name}:{path}:{path.stat().st_mtime_ns}" if path else f"{name}:none"
        previews.append(gr.skip() if seen.get(key) == stamp else (str(path) if path else None))
        seen[key] = stamp
    return (view.headline(), bars_html(view.state.bars),
            ui_background.screen_lines(view.state.log_tail), *previews, seen)


# --- batch -----------------------------------------------------------------------------------

def batch_tab(options: ui_say.ServerOptions) -> tuple[gr.Dropdown, gr.Dropdown]:
    with gr.Row():
        with gr.Column():
            jobs = gr.File(label="jobs.jsonl: one job per line, e.g. {\"id\": \"a1\", \"text\": "
                           "\"Hello\"}", file_types=[".jsonl", ".json", ".txt"],
                           elem_id="batch-jobs")
            extras = gr.File(label="Files the jobs name (audio, text files), relative to the "
                             "jobs file", file_count="multiple", elem_id="batch-extras")
            persons = ui_files.person_choices()
            person = gr.Dropdown(persons, value="demo" if "demo" in persons else None,
                                 label="Person for jobs that name none", elem_id="batch-person")
            allow = gr.Checkbox(False, label="Allow jobs with \"watermark\": false to leave out "
                                "the visible SYNTHETIC label", elem_id="batch-allow-no-watermark")
            start = gr.Button("Run batch", variant="primary", elem_id="batch-start")
        with gr.Column():
            shown = gr.Dropdown(ui_batch.batch_requests(), value=None, label="Batch to show",
                                elem_id="batch-shown")
            status = gr.Markdown(elem_id="batch-status")
            bad = gr.Textbox(label="Bad lines", visible=False, interactive=False,
                             elem_id="batch-bad")
            table = gr.Dataframe(headers=["job", "status", "detail"], interactive=False,
                                 elem_id="batch-table")
            zipped = gr.File(label="Download all clips (zip)", interactive=False,
                             elem_id="batch-zip")
    start.click(lambda *a: run_batch(options, *a), [jobs, extras, person, allow],
                [status, bad, shown])
    shown.change(show_batch, shown, [status, table, zipped], show_progress="hidden")
    gr.Timer(POLL_S).tick(show_batch, shown, [status, table, zipped], show_progress="hidden")
    return person, shown


def run_batch(options, jobs, extras, person, allow):
    from pipelines.runner import JobsFileError
    try:
        request = ui_batch.start_batch(jobs, extras, person, bool(allow), options)
    except JobsFileError as e:
        return error_line(e), gr.Textbox(value="\n".join(e.lines), visible=True), gr.skip()
    except Exception as e:  # noqa: BLE001
        return error_line(e), gr.Textbox(value="", visible=False), gr.skip()
    return (f"started batch {request}", gr.Textbox(value="", visible=False),
            gr.Dropdown(choices=ui_batch.batch_requests(), value=request))


def show_batch(request):
    if not request:
        return "", gr.skip(), gr.skip()
    try:
        view = ui_batch.batch_view(request)
    except Exception as e:  # noqa: BLE001
        return error_line(e), gr.skip(), gr.skip()
    return view.headline(), view.rows, str(view.zip_path) if view.zip_path else None
