"""Quantization: GGUF through llama.cpp, bitsandbytes for the torch engine."""
