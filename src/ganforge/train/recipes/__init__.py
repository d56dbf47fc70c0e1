"""The recipes: one per model family, chosen by `config.recipe` ("auto": by the model's name).

    recipe = create_recipe(config, dataset, device, rng)   # networks, optimiser groups, phases, losses

A new family writes a `Recipe` subclass and adds it to RECIPES; the loop does not change.
"""

from __future__ import annotations

from ganforge.train.recipes.base import Batch, OptimizerGroup, Phase, Recipe
from ganforge.train.recipes.classic import ClassicRecipe
from ganforge.train.recipes.cyclegan import CycleGANRecipe
from ganforge.train.recipes.dtn import DTNRecipe
from ganforge.train.recipes.fields import RecipeError, model_fields
from ganforge.train.recipes.pix2pix import Pix2PixRecipe
from ganforge.train.recipes.progressive import ProgressiveRecipe
from ganforge.train.recipes.spade import SPADERecipe
from ganforge.train.recipes.sr import SRRecipe
from ganforge.train.recipes.stylegan2 import StyleGAN2Recipe

RECIPES: dict[str, type[Recipe]] = {"classic": ClassicRecipe, "stylegan2": StyleGAN2Recipe,
                                    "progressive": ProgressiveRecipe, "pix2pix": Pix2PixRecipe}
RECIPES["cyclegan"] = CycleGANRecipe
# model name -> its recipe; others train with the classic one
MODEL_RECIPES = {"stylegan2": "stylegan2", "progan": "progressive", "pix2pix": "pix2pix"}
RECIPES["spade"] = SPADERecipe
MODEL_RECIPES["spade"] = "spade"
MODEL_RECIPES["cyclegan"] = "cyclegan"
RECIPES["dtn"] = DTNRecipe
MODEL_RECIPES["dtn"] = "dtn"
RECIPES["sr"] = SRRecipe
MODEL_RECIPES["srresnet"] = "sr"

__all__ = ["RECIPES", "Batch", "OptimizerGroup", "Phase", "Recipe", "RecipeError", "create_recipe", "model_fields",
           "recipe_name"]


def recipe_name(config) -> str:
    name = config.recipe if config.recipe != "auto" else MODEL_RECIPES.get(config.model.get("name"), "classic")
    if name not in RECIPES:
        raise RecipeError(f"Unknown recipe {name!r}; the recipes are {', '.join(sorted(RECIPES))} (or auto).")
    return name


def create_recipe(config, dataset, device, rng) -> Recipe:
    return RECIPES[recipe_name(config)](config, dataset, device, rng)
