"""bitsandbytes.optim: drop-in optimizers with 32-bit or 8-bit (block-wise quantized) state, and
Adam/AdamW with 4-bit state.
The submodules carry the reference library's module paths (`bitsandbytes.optim.adamw`, ...)."""
from .adagrad import Adagrad, Adagrad8bit, Adagrad32bit
from .ademamix import AdEMAMix, AdEMAMix8bit, AdEMAMix32bit, PagedAdEMAMix, PagedAdEMAMix8bit, PagedAdEMAMix32bit
from .adam import Adam, Adam4bit, Adam8bit, Adam32bit, PagedAdam, PagedAdam4bit, PagedAdam8bit, PagedAdam32bit
from .adamw import AdamW, AdamW4bit, AdamW8bit, AdamW32bit, PagedAdamW, PagedAdamW4bit, PagedAdamW8bit, PagedAdamW32bit
from .lamb import LAMB, LAMB8bit, LAMB32bit
from .lars import LARS, LARS8bit, LARS32bit, PytorchLARS
from .lion import Lion, Lion8bit, Lion32bit, PagedLion, PagedLion8bit, PagedLion32bit
from .manager import GlobalOptimManager
from .optimizer import Optimizer1State, Optimizer2State, Optimizer8bit
from .rmsprop import RMSprop, RMSprop8bit, RMSprop32bit
from .sgd import SGD, SGD8bit, SGD32bit

__all__ = [
    "Adagrad", "Adagrad8bit", "Adagrad32bit", "AdEMAMix", "AdEMAMix8bit", "AdEMAMix32bit", "Adam", "Adam4bit",
    "Adam8bit", "Adam32bit", "AdamW", "AdamW4bit", "AdamW8bit", "AdamW32bit", "GlobalOptimManager", "LAMB", "LAMB8bit",
    "LAMB32bit", "LARS", "LARS8bit", "LARS32bit", "Lion", "Lion8bit", "Lion32bit", "Optimizer1State", "Optimizer2State",
    "Optimizer8bit", "PagedAdEMAMix", "PagedAdEMAMix8bit", "PagedAdEMAMix32bit", "PagedAdam", "PagedAdam4bit",
    "PagedAdam8bit", "PagedAdam32bit", "PagedAdamW", "PagedAdamW4bit", "PagedAdamW8bit", "PagedAdamW32bit",
    "PagedLion", "PagedLion8bit", "PagedLion32bit", "PytorchLARS", "RMSprop", "RMSprop8bit", "RMSprop32bit", "SGD",
    "SGD8bit", "SGD32bit",
]
