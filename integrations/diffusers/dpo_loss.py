"""The Diffusion-DPO objective (Wallace et al. 2023) on per-sample denoising losses, and its flow-matching inputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DiffusionDPOOutput:
    """Loss and the implicit-reward statistics of one batch of (chosen, rejected) pairs."""

    loss: torch.Tensor  # scalar, differentiable
    margins: torch.Tensor  # (B,) implicit reward of chosen minus rejected; > 0 means the pair is ranked right
    rewards_chosen: torch.Tensor  # (B,)
    rewards_rejected: torch.Tensor  # (B,)

    @property
    def implicit_accuracy(self) -> torch.Tensor:
        """Share of pairs ranked right; an exact tie (e.g. before any update) counts one half."""
        return (self.margins > 0).float().mean() + 0.5 * (self.margins == 0).float().mean()

    def metrics(self) -> dict[str, float]:
        return {
            "loss": self.loss.detach().item(),
            "implicit_acc": self.implicit_accuracy.item(),
            "rewards/chosen": self.rewards_chosen.mean().item(),
            "rewards/rejected": self.rewards_rejected.mean().item(),
            "rewards/margins": self.margins.mean().item(),
        }


def per_sample_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample, computed in fp32."""
    losses = F.mse_loss(prediction.float(), target.float(), reduction="none")
    return losses.mean(dim=list(range(1, losses.ndim)))


def diffusion_dpo_loss(
    model_losses: torch.Tensor, ref_losses: torch.Tensor, beta_dpo: float, loss_type: str = "sigmoid"
) -> DiffusionDPOOutput:
    """Diffusion-DPO loss from per-sample losses laid out as ``[chosen..., rejected...]``.

    The implicit reward of a sample is ``-0.5 * beta_dpo * (model_loss - ref_loss)``; with ``beta_dpo=5000`` this is
    the paper's / UnifiedReward's setting, which diffusers' SD1.5 research script writes as ``--beta_dpo 2500``
    without the 0.5 factor.
    """
    model_w, model_l = model_losses.chunk(2)
    ref_w, ref_l = ref_losses.detach().chunk(2)
    rewards_chosen = -0.5 * beta_dpo * (model_w - ref_w)
    rewards_rejected = -0.5 * beta_dpo * (model_l - ref_l)
    margins = rewards_chosen - rewards_rejected
    if loss_type == "sigmoid":
        loss = -F.logsigmoid(margins).mean()
    elif loss_type == "hinge":
        loss = torch.relu(1 - margins).mean()
    else:
        raise ValueError(f"Unknown loss_type {loss_type!r}; choose 'sigmoid' or 'hinge'.")
    return DiffusionDPOOutput(
        loss=loss,
        margins=margins.detach(),
        rewards_chosen=rewards_chosen.detach(),
        rewards_rejected=rewards_rejected.detach(),
    )


def flow_matching_inputs(
    latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rectified-flow noisy input ``(1 - sigma) * x0 + sigma * noise`` and velocity target ``noise - x0``.

    The flow-matching form of Wan / LTX / SD3 / FLUX (diffusers' ``FlowMatchEulerDiscreteScheduler``; ``sigmas``
    has one value per sample). Flow-DPO (Liu et al. 2025, "Improving Video Generation with Human Feedback",
    arXiv:2501.13918) is the Diffusion-DPO objective with these velocity errors in place of the noise errors and a
    constant beta: :func:`diffusion_dpo_loss` on :func:`per_sample_mse` of the velocity prediction.
    """
    shape = (-1,) + (1,) * (latents.ndim - 1)
    sigmas = sigmas.to(latents.device, latents.dtype).reshape(shape)
    return (1.0 - sigmas) * latents + sigmas * noise, noise - latents
