"""The page's layout: the run picker, the image, three tabs, and which handler each event calls
(`samexp/app/handlers.py`). `python -m samexp.app` launches it."""

from __future__ import annotations

import gradio as gr

from samexp.app.handlers import Page, answered, api_errors
from samexp.app.session import ClickMode, Tab

HELP = (
    "Pick a run (or load an adapter file), then an example or your own image. "
    "**Box:** click two opposite corners. **Points:** click on the object (positive) or beside "
    "it (negative). Both models answer each prompt; the image is encoded once, so later prompts "
    "take decoder time only."
)


def build(page: Page) -> gr.Blocks:
    """The Blocks; `python -m samexp.app` launches it."""
    with gr.Blocks(title="samexp demo", analytics_enabled=False) as blocks:
        tab = gr.State(Tab())
        gr.Markdown("# samexp: zero-shot SAM against your fine-tuned model\n" + HELP)
        with gr.Row():
            run = gr.Dropdown(label="Finished run (newest first)", choices=[], scale=4,
                              elem_id="run")  # fmt: skip
            refresh = gr.Button("↻ runs", scale=0)
        with gr.Row():
            weights = gr.Textbox(label="…or an adapter file (.safetensors)", scale=4,
                                 placeholder="/path/to/adapter.safetensors")  # fmt: skip
            load = gr.Button("Load file", scale=0)
        status = gr.Markdown(elem_id="status")
        message = gr.Markdown(elem_id="message")
        with gr.Row():
            upload = gr.File(label="Upload an image", type="filepath", elem_id="upload", scale=1)
            # thumbnails in fixed columns: gradio's fit_columns stretches two images page-wide
            gallery = gr.Gallery(label="…or pick one of the run's test images", columns=6,
                                 fit_columns=False, height=190, allow_preview=False,
                                 object_fit="contain", elem_id="examples", scale=3)  # fmt: skip
        picked = gr.Markdown(elem_id="picked")
        with gr.Tabs():
            with gr.Tab("Box and points", id="prompt"):
                with gr.Row():
                    mode = gr.Radio([m.value for m in ClickMode], value=ClickMode.box.value,
                                    label="A click on the image adds", scale=3)  # fmt: skip
                    clear = gr.Button("Clear prompts", scale=0)
                    alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="Mask opacity", scale=2)
                canvas = gr.Image(label="Your image: click it", interactive=False, format="png",
                                  elem_id="canvas", buttons=[], height=460)  # fmt: skip
                with gr.Row():
                    zero = gr.Image(label="zero-shot", interactive=False, format="png",
                                    elem_id="zero-shot", height=400)  # fmt: skip
                    tuned = gr.Image(label="fine-tuned", interactive=False, format="png",
                                     elem_id="fine-tuned", height=400)  # fmt: skip
                timing = gr.Markdown(elem_id="timing")
            with gr.Tab("Automatic masks", id="auto"):
                with gr.Row():
                    per_side = gr.Slider(4, 64, value=16, step=4, label="Points per side")
                    generate = gr.Button("Find every mask", elem_id="auto-run")
                with gr.Row():
                    auto_zero = gr.Image(label="zero-shot", interactive=False, format="png")
                    auto_tuned = gr.Image(label="fine-tuned", interactive=False, format="png")
            with gr.Tab("Promptless (learned classes)", id="classes"):
                classes_note = gr.Markdown()
                segment_classes = gr.Button("Segment every learned class", elem_id="classes-run")
                classes_image = gr.Image(label="fine-tuned, no prompt", interactive=False,
                                         format="png")  # fmt: skip
                classes_line = gr.Markdown()
        _api(page)

        run_outputs = [tab, status, gallery, classes_note, message]
        image_outputs = [tab, canvas, zero, tuned, picked, message]
        answer_outputs = [tab, canvas, zero, tuned, timing, message]
        blocks.load(answered(6)(page.on_load), [tab], [tab, run, status, gallery, classes_note,
                                                       message])  # fmt: skip
        refresh.click(answered(2)(lambda: (gr.update(choices=page.run_choices()), "")), None,
                      [run, message])  # fmt: skip
        run.input(answered(5)(page.pick_run), [tab, run], run_outputs)
        load.click(answered(5)(page.pick_weights), [tab, weights], run_outputs)
        upload.upload(answered(6)(page.upload), [tab, upload], image_outputs)
        gallery.select(answered(6)(page.example), [tab], image_outputs)
        canvas.select(answered(6)(page.click), [tab, mode, alpha], answer_outputs)
        clear.click(answered(6)(page.clear), [tab], answer_outputs)
        alpha.release(answered(4)(page.opacity), [tab, alpha], [zero, tuned, timing, message])
        generate.click(answered(3)(page.auto), [tab, per_side, alpha],
                       [auto_zero, auto_tuned, message])  # fmt: skip
        segment_classes.click(answered(3)(page.promptless), [tab, alpha],
                              [classes_image, classes_line, message])  # fmt: skip
    return blocks


def _api(page: Page) -> None:
    """The API's own hidden inputs and outputs (gradio_client's `segment`), inside the Blocks."""
    with gr.Row(visible=False):
        api_in = [gr.File(type="filepath", label="image"),
                  gr.Textbox(label="box", info="[x0, y0, x1, y1] in image pixels, or empty"),
                  gr.Textbox(label="points", info="[[x, y], ...] or empty"),
                  gr.Textbox(label="labels", info="[1, 0, ...]: 1 positive, 0 negative"),
                  gr.Textbox(label="run_id", info="empty: the app's run"),
                  gr.Textbox(label="weights", info="or an adapter file on the server"),
                  gr.Number(value=0.5, label="alpha")]  # fmt: skip
        api_out = [gr.Image(format="png", label="zero_shot"),
                   gr.Image(format="png", label="fine_tuned"), gr.JSON(label="info")]  # fmt: skip
        api_button = gr.Button()
    api_button.click(api_errors(page.api_segment), api_in, api_out, api_name="segment")
