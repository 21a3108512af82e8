"""A fine-tuned model as two ONNX graphs, the split SAM's own `utils/onnx.py` made: the image
encoder (once per image, >95% of the compute) and the prompt-to-mask decoder (per click), and
the runtime that predicts with them through onnxruntime, for every model family."""
