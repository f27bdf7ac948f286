"""Reference computations for cnnviz's C++ tests: module taps and rule gradients.

Contract of `reference(model, arch, size, seed, mid_layer)`: a dict holding
only tensors, strings, lists of strings and ints (torch::pickle_load reads it):
  "input"                   float [1,3,S,S] = torch.randn with generator seed `seed`
  "output"                  eager logits on "input"
  "order"                   module paths (named_modules, root excluded) in the
                            order their forward returned a Tensor; a second call
                            of one module is "path#1", a third "path#2", ...
  "tap:<key>"               that call's output, detached and cloned when it
                            returned (before a later in-place op changed it)
  "grad:<rule>:<objective>" d objective / d input for rule in RULES, objective
                            "logit" = output[0, REFERENCE_LOGIT],
                            "neglogit" = output[0, neglogit_index] (the
                            smallest logit, negative for every fixture: a
                            class target whose seed has the other sign),
                            "mid" = (first output of mid_layer).sum() or
                            "mid0" = its channel 0 summed (Captum's neuron
                            selector given as a sum over one map)
  "mid_layer", "logit_index", "neglogit_index", "arch"

Rules replace every ReLU-like op (nn.ReLU incl. inplace, nn.ReLU6 and
nn.Hardtanh(0, 6) modules, F.relu, F.relu6, F.hardtanh(0, 6), torch.relu,
torch.relu_) by an out-of-place autograd.Function with the same forward and
the backward   gradient: g*(x>0)   deconvnet: relu(g)   guided: relu(g)*(x>0)
(the mask is 0<x<6 for ReLU6): Zeiler & Fergus 2014 (DeconvNet), Springenberg
et al. 2015 (guided backpropagation). Checked on every call: no native
relu/hardtanh/threshold node is left in the autograd graph, the forward is
unchanged, and the "gradient" rule equals plain autograd. Not replaced (and
only partly detected): LeakyReLU, PReLU, threshold, clamp, Tensor.relu.
"""

import contextlib
import re
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

REFERENCE_LOGIT = 7  # objective "logit" is output[0, REFERENCE_LOGIT]
RULES = ("gradient", "deconvnet", "guided")
OBJECTIVES = ("logit", "mid", "neglogit", "mid0")
RELU6_UPPER = 6.0
NATIVE_RECTIFIER_NODE = re.compile(r"^(Relu|Relu6|Hardtanh|Threshold)Backward\d*$")
GRADIENT_TOLERANCE = 1e-5  # relative to the gradient's largest magnitude


def logits_of(output):
    """The logits tensor of a model output (first element of a tuple/NamedTuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


class RectifierRule(torch.autograd.Function):
    """ReLU (upper=None) or ReLU6 (upper=6) whose backward follows a visualization rule."""

    @staticmethod
    def forward(ctx, x, rule, upper):
        ctx.save_for_backward(x)
        ctx.rule, ctx.upper = rule, upper
        return x.clamp(min=0) if upper is None else x.clamp(0, upper)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        passing = x > 0 if ctx.upper is None else (x > 0) & (x < ctx.upper)
        if ctx.rule != "gradient":  # deconvnet and guided rectify the incoming signal
            grad = grad.clamp(min=0)
        if ctx.rule != "deconvnet":  # gradient and guided keep the forward mask
            grad = torch.where(passing, grad, torch.zeros_like(grad))
        return grad, None, None


def rectifier_upper(module):
    """None for nn.ReLU, 6.0 for ReLU6-like Hardtanh(0, 6), False for anything else."""
    if type(module) is nn.ReLU:
        return None
    if isinstance(module, nn.Hardtanh) and module.min_val == 0 and module.max_val == RELU6_UPPER:
        return RELU6_UPPER
    return False


@contextlib.contextmanager
def rectifier_rule(model, rule):
    """Within the block, every ReLU-like module and function of `model` follows `rule`."""
    def apply(x, upper):
        return RectifierRule.apply(x, rule, upper)

    originals = {(F, "relu"): F.relu, (F, "relu6"): F.relu6, (F, "hardtanh"): F.hardtanh,
                 (torch, "relu"): torch.relu, (torch, "relu_"): torch.relu_}

    def hardtanh(x, min_val=-1.0, max_val=1.0, inplace=False):
        if min_val == 0 and max_val == RELU6_UPPER:
            return apply(x, upper=RELU6_UPPER)
        return originals[(F, "hardtanh")](x, min_val, max_val, inplace)

    replacements = {(F, "relu"): lambda x, inplace=False: apply(x, upper=None),
                    (F, "relu6"): lambda x, inplace=False: apply(x, upper=RELU6_UPPER),
                    (F, "hardtanh"): hardtanh,
                    (torch, "relu"): lambda x: apply(x, upper=None),
                    (torch, "relu_"): lambda x: apply(x, upper=None)}
    modules = [(m, rectifier_upper(m)) for m in model.modules() if rectifier_upper(m) is not False]
    try:
        for module, upper in modules:
            module.forward = partial(apply, upper=upper)
        for (owner, name), function in replacements.items():
            setattr(owner, name, function)
        yield
    finally:
        for (owner, name), function in originals.items():
            setattr(owner, name, function)
        for module, _ in modules:
            module.__dict__.pop("forward", None)


@contextlib.contextmanager
def recorded_calls(model):
    """Hooks on every named submodule; yields (order, outputs) filled as forward runs.

    order lists "path" / "path#k" per call that returned a Tensor; outputs maps
    those keys to the output, detached and cloned at hook time. Hooks are
    removed on exit.
    """
    order, outputs, calls, handles = [], {}, {}, []

    def hook(path, module, inputs, output):
        if not isinstance(output, torch.Tensor):
            return
        count = calls.get(path, 0)
        calls[path] = count + 1
        key = path if count == 0 else f"{path}#{count}"
        order.append(key)
        outputs[key] = output.detach().clone()

    try:
        for path, module in model.named_modules():
            if path:
                handles.append(module.register_forward_hook(partial(hook, path)))
        yield order, outputs
    finally:
        for handle in handles:
            handle.remove()


def native_rectifiers(root):
    """Names of native ReLU/hardtanh/threshold backward nodes reachable from tensor `root`."""
    found, seen, stack = set(), set(), [root.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if NATIVE_RECTIFIER_NODE.match(type(node).__name__):
            found.add(type(node).__name__)
        stack.extend(parent for parent, _ in node.next_functions)
    return found


def input_gradient(model, inputs, objective, mid_layer, rule=None, neglogit_index=0):
    """(d objective / d inputs, logits) under `rule` (None = plain autograd)."""
    x = inputs.clone().requires_grad_(True)
    with contextlib.ExitStack() as stack:
        if rule is not None:
            stack.enter_context(rectifier_rule(model, rule))
        mid = model.get_submodule(mid_layer)
        captured = []
        handle = mid.register_forward_hook(lambda m, i, out: captured.append(out.clone()))
        stack.callback(handle.remove)
        logits = logits_of(model(x))
        if objective == "logit":
            value = logits[0, REFERENCE_LOGIT]
        elif objective == "neglogit":
            value = logits[0, neglogit_index]
        elif objective == "mid0":
            value = captured[0][:, 0].sum()
        else:
            value = captured[0].sum()
        if rule is not None and native_rectifiers(value):
            raise RuntimeError(f"rule {rule!r} left native ops in the graph: "
                               f"{sorted(native_rectifiers(value))}")
        (gradient,) = torch.autograd.grad(value, x)
    return gradient, logits.detach()


def reference(model, arch, size, seed, mid_layer):
    """The reference dictionary described in the module docstring."""
    inputs = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 1.0
    with torch.no_grad(), recorded_calls(model) as (order, taps):
        output = logits_of(model(inputs)).detach().clone()
    if mid_layer not in taps:
        raise ValueError(f"mid layer {mid_layer!r} produced no tensor output in {arch}")
    neglogit_index = int(output[0].argmin())
    result = {"input": inputs, "output": output, "order": list(order), "mid_layer": mid_layer,
              "logit_index": REFERENCE_LOGIT, "neglogit_index": neglogit_index, "arch": arch}
    result.update({f"tap:{key}": value for key, value in taps.items()})
    for objective in OBJECTIVES:
        plain, _ = input_gradient(model, inputs, objective, mid_layer, None, neglogit_index)
        for rule in RULES:
            gradient, logits = input_gradient(model, inputs, objective, mid_layer, rule, neglogit_index)
            check_close(logits, output, f"forward under rule {rule}")
            if rule == "gradient":
                check_close(gradient, plain, f"gradient rule vs autograd ({objective})")
            result[f"grad:{rule}:{objective}"] = gradient
    return result


def check_close(actual, expected, what):
    """RuntimeError unless max |actual - expected| <= GRADIENT_TOLERANCE * max(|expected|, tiny)."""
    scale = max(expected.abs().max().item(), torch.finfo(torch.float32).tiny)
    difference = (actual - expected).abs().max().item()
    if difference > GRADIENT_TOLERANCE * scale:
        raise RuntimeError(f"{what}: max difference {difference:g} (scale {scale:g})")
