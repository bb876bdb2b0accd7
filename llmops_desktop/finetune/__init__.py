"""Fine-tuning: LoRA and QLoRA with transformers + peft, as a resumable job.

Plain Python; torch, transformers and peft are imported inside the functions that use
them. :mod:`.task` holds the job kinds ("finetune", "merge", "lora-gguf"), :mod:`.train`
the training loop, :mod:`.memory` the memory estimate, :mod:`.launcher` the torchrun path
for several processes.
"""
