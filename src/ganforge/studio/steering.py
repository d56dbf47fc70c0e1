"""The studio's Breed and steer routes (artbreeder): breed children of chosen parents (blend, crossover or,
for StyleGAN models, genes per layer group), keep them, draw any image again from its recipe and its family
tree, and steer one image with sliders: PCA directions, truncation, attributes and style mixing."""

from __future__ import annotations

import asyncio
import json
import shutil

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response

from ganforge.studio.batcher import png_bytes
from ganforge.studio.db import Made
from ganforge.studio.requests import read_json as _json
from ganforge.studio.requests import visible
from ganforge.studio.security import StudioError, check_count, check_seed, check_truncation, is_owner

MODES = ("blend", "crossover", "genes")
GROUPS = ("coarse", "middle", "fine")
MAX_EDITS = 16


def add_steering_routes(app: FastAPI, studio) -> None:
    lineage = studio.folder.root / "lineage"
    lineage.mkdir(exist_ok=True)

    def generator(request: Request, name: str):
        entry = visible(studio, request, name)
        if entry.task == "image-to-image":
            raise StudioError(422, "not_generator", name=name)
        return studio.loaded(name)

    @app.get("/api/models/{name}/controls")
    def controls(name: str, request: Request):
        """What the Breed page can offer for this model: directions, attributes, style mixing, genes."""
        from ganforge import steer
        from ganforge.attributes import attribute_specs

        gen = generator(request, name)
        styles = steer.style_based(gen)
        groups = {g: layers for g, layers in steer.layer_groups(gen).items() if layers} if styles else {}
        attributes = [{"name": s.name, "kind": s.kind, "mean": s.mean, "std": s.std, "values": list(s.values),
                       "low": s.low, "high": s.high} for s in attribute_specs(gen)]
        found = (studio.folder.model(name).path / "directions.json").is_file()
        return {"name": name, "styles": styles, "groups": groups, "attributes": attributes,
                "modes": [m for m in MODES if styles or m != "genes"], "directions": _direction_count(gen) if found else 0}

    @app.post("/api/models/{name}/breed")
    async def breed(name: str, request: Request):
        from ganforge import explore, steer

        gen = generator(request, name)
        body = await _json(request)
        parents = body.get("parents")
        if not isinstance(parents, list) or not 2 <= len(parents) <= 16:
            raise StudioError(422, "bad_request", detail="parents must be a list of 2 to 16 seeds or image ids")
        count = check_count(body.get("count", 8))
        mutation = body.get("mutation", 0.1)
        if isinstance(mutation, bool) or not isinstance(mutation, (int, float)) or not 0 <= mutation <= 2:
            raise StudioError(422, "bad_request", detail="mutation must be a number from 0 to 2")
        seed = check_seed(body.get("seed", 0))
        mode = body.get("mode", "blend")
        if mode not in MODES:
            raise StudioError(422, "bad_request", detail="mode must be 'blend', 'crossover' or 'genes'")
        if mode == "genes" and not steer.style_based(gen):
            raise StudioError(422, "bad_request", detail="genes (layer groups from different parents) need a StyleGAN "
                                                         "model; use blend or crossover")
        refs, parent_ids = [], []
        for parent in parents:
            if isinstance(parent, dict) and "image" in parent:
                made = _made(studio, parent["image"], name)
                if made.recipe.get("mode") == "genes" and mode != "genes":
                    raise StudioError(422, "bad_request", detail=f"image {made.id} was bred with genes (it holds a "
                                                                 "style per layer): breed it again with genes")
                refs.append(made.recipe["seed"] if made.kind == "seed" else str(lineage / f"{made.id}.npy"))
                parent_ids.append(made.id)
            elif isinstance(parent, dict) and "seed" in parent:
                seed_id = _seed_image(studio, name, check_seed(parent["seed"]))
                refs.append(check_seed(parent["seed"]))
                parent_ids.append(seed_id)
            else:
                raise StudioError(422, "bad_request", detail='each parent is {"seed": N} or {"image": ID}')
        scratch = lineage / f"brood-{seed}-{len(parent_ids)}-{np.random.default_rng().integers(1 << 30)}"
        if mode == "genes":
            make = lambda: steer.breed_genes(gen, refs, children=count, mutation=float(mutation), seed=seed,  # noqa: E731
                                             out=scratch)
        else:
            make = lambda: explore.breed(gen, refs, children=count, mutation=float(mutation), mode=mode,  # noqa: E731
                                         seed=seed, out=scratch)
        await asyncio.get_running_loop().run_in_executor(None, make)
        children = []
        with studio.sessions.begin() as s:
            for k in range(count):
                made = Made(model=name, kind="child", parents=parent_ids,
                            recipe={"mode": mode, "mutation": mutation, "seed": seed, "child": k, "parents": parents})
                s.add(made)
                s.flush()
                shutil.move(scratch / f"child-{k:02d}.npy", lineage / f"{made.id}.npy")
                children.append({"id": made.id, "url": f"/api/images/{made.id}.png"})
        shutil.rmtree(scratch, ignore_errors=True)
        return {"children": children, "parents": parent_ids}

    @app.post("/api/images/{image_id}/keep")
    def keep(image_id: int, request: Request):
        with studio.sessions.begin() as s:
            made = s.get(Made, image_id)
            if made is None:
                raise StudioError(404, "not_found", what="image", name=str(image_id))
            visible(studio, request, made.model)
            made.kept = True
        return {"id": image_id, "kept": True}

    @app.get("/api/images/{image_id}.png")
    def made_image(image_id: int, request: Request):
        from ganforge import steer

        with studio.sessions() as s:
            made = s.get(Made, image_id)
        if made is None:
            raise StudioError(404, "not_found", what="image", name=str(image_id))
        visible(studio, request, made.model)
        gen = studio.loaded(made.model)
        if made.kind == "seed":
            image = gen.sample([made.recipe["seed"]])[0]
            meta = {"seed": made.recipe["seed"], **gen.signed(image, made.recipe["seed"])}
        else:  # a child: its latent (blend, crossover) or its styles (genes), kept in the lineage folder
            code = steer.load_styles(gen, lineage / f"{made.id}.npy") if made.recipe.get("mode") == "genes" else \
                steer.codes_of(gen, [str(lineage / f"{made.id}.npy")])[0]
            image = gen.to_images(steer.render_codes(gen, [code]))[0]
            meta = {"recipe": json.dumps(made.recipe), **gen.signed(image)}
        return Response(png_bytes(image, meta), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/images/{image_id}/lineage")
    def image_lineage(image_id: int, request: Request):
        """The image and every ancestor, each with its recipe: the family tree of a bred image."""
        tree, todo = {}, [image_id]
        with studio.sessions() as s:
            while todo and len(tree) < 500:
                current = todo.pop()
                if current in tree:
                    continue
                made = s.get(Made, current)
                if made is None:
                    raise StudioError(404, "not_found", what="image", name=str(current))
                visible(studio, request, made.model)
                tree[current] = {"id": made.id, "kind": made.kind, "parents": made.parents, "recipe": made.recipe,
                                 "url": f"/api/images/{made.id}.png", "kept": made.kept, "model": made.model}
                todo += made.parents
        return {"image": image_id, "images": list(tree.values())}

    # --- sliders: directions, truncation, attributes, style mixing -----------------------------------------

    @app.get("/api/models/{name}/directions")
    def directions_of(name: str, request: Request):
        entry = visible(studio, request, name)
        if not (entry.path / "directions.json").is_file():
            return {"name": name, "found": False, "count": 0}
        return {"name": name, "found": True, "count": _direction_count(studio.loaded(name))}

    @app.post("/api/models/{name}/directions")
    async def find(name: str, request: Request):
        """Find the model's directions (PCA, GANSpace), once: the owner asks, the sliders use them."""
        from ganforge.directions import find_directions

        if not is_owner(request):
            raise StudioError(403, "owner_only")
        studio.folder.model(name)
        gen = studio.loaded(name)
        found = await asyncio.get_running_loop().run_in_executor(
            None, lambda: find_directions(gen, count=8, samples=2000, overwrite=True))
        return {"name": name, "found": True, "count": len(found.vectors)}

    @app.get("/api/models/{name}/steer.png")
    def steer_image(name: str, request: Request, seed: int, edits: str = "", truncation: float = 1.0):
        """Seed `seed` moved along directions: edits=1:0.5,3:-2 (direction:strength, strengths -5..5)."""
        from ganforge.directions import Steer

        entry = visible(studio, request, name)
        if not (entry.path / "directions.json").is_file():
            raise StudioError(409, "bad_request", detail="no directions found for this model yet")
        moves = {}
        for key, value in _pairs(edits, "edits look like 1:0.5,3:-2"):
            try:
                moves[int(key)] = float(value)
            except ValueError:
                raise StudioError(422, "bad_request", detail="edits look like 1:0.5,3:-2") from None
            if not -5 <= moves[int(key)] <= 5:
                raise StudioError(422, "bad_request", detail="strengths go from -5 to 5")
        gen = studio.loaded(name)
        image = Steer(gen).image(check_seed(seed), moves, truncation=check_truncation(truncation))
        return Response(png_bytes(image, {"seed": seed, "edits": edits, **gen.signed(image, seed)}), media_type="image/png")

    @app.get("/api/models/{name}/attributes.png")
    def attributes_image(name: str, request: Request, seed: int, values: str, truncation: float = 1.0):
        """Seed `seed` with attributes set (values=thickness:2.5,hair:blond); the others at the data's average.
        The latent is the seed's throughout, so the identity stays while the attributes change."""
        from ganforge.attributes import attribute_edit, attribute_specs

        gen = generator(request, name)
        specs = {s.name: s for s in attribute_specs(gen)}
        if not specs:
            raise StudioError(422, "bad_request", detail="this model was not trained with attributes")
        wanted = {}
        for key, value in _pairs(values, "values look like thickness:2.5,hair:blond"):
            spec = specs.get(key)
            if spec is None:
                raise StudioError(422, "bad_request", detail=f"no attribute {key!r}; this model has {', '.join(specs)}")
            if spec.kind == "continuous":
                try:
                    number = float(value)
                except ValueError:
                    number = float("nan")
                if not np.isfinite(number) or abs(number - spec.mean) > 10 * max(spec.std, 1e-6):
                    raise StudioError(422, "bad_request", detail=f"{key} takes a number near {spec.mean:.3g} "
                                                                 f"(within 10 standard deviations)")
                wanted[key] = number
            elif value not in spec.values:
                raise StudioError(422, "bad_request", detail=f"{key} is one of {', '.join(spec.values)}")
            else:
                wanted[key] = value
        if not wanted:
            raise StudioError(422, "bad_request", detail="give at least one attribute, e.g. values=thickness:2.5")
        first, *rest = wanted
        image = attribute_edit(gen, check_seed(seed), first, [wanted[first]], truncation=check_truncation(truncation),
                               others={k: wanted[k] for k in rest})[0]
        return Response(png_bytes(image, {"seed": seed, "attributes": values, **gen.signed(image, seed)}),
                        media_type="image/png")

    @app.get("/api/models/{name}/mix.png")
    def mix_image(name: str, request: Request, row: int, col: int, layers: str = "coarse", truncation: float = 1.0):
        """Style mixing (StyleGAN): seed `row`'s styles on the `layers` group, seed `col`'s on the others."""
        from ganforge import steer

        gen = generator(request, name)
        if not steer.style_based(gen):
            raise StudioError(422, "bad_request", detail="style mixing needs a StyleGAN model (one style per layer)")
        groups = steer.layer_groups(gen)
        if layers not in GROUPS or not groups[layers]:
            have = ", ".join(g for g in GROUPS if groups[g])
            raise StudioError(422, "bad_request", detail=f"layers is one of {have} for this model")
        first, second = steer.codes_of(gen, [check_seed(row), check_seed(col)], truncation=check_truncation(truncation))
        mixed = steer.Code(steer.mix(first.value, second.value, groups[layers]), second.label, f"{row} x {col}")
        image = gen.to_images(steer.render_codes(gen, [mixed]))[0]
        meta = {"row": row, "col": col, "layers": layers, **gen.signed(image)}
        return Response(png_bytes(image, meta), media_type="image/png", headers={"Cache-Control": "max-age=3600"})


def _pairs(text: str, example: str) -> list[tuple[str, str]]:
    """'1:0.5,3:-2' -> [('1', '0.5'), ('3', '-2')], at most MAX_EDITS pairs, each key once."""
    pairs = []
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition(":")
        if not sep or not key.strip() or not value.strip():
            raise StudioError(422, "bad_request", detail=example)
        pairs.append((key.strip(), value.strip()))
    if len(pairs) > MAX_EDITS or len({k for k, _ in pairs}) != len(pairs):
        raise StudioError(422, "bad_request", detail=f"at most {MAX_EDITS} different names; {example}")
    return pairs


def _direction_count(gen) -> int:
    from ganforge.directions import load_directions

    return len(load_directions(gen).vectors)


def _made(studio, image_id, model: str) -> Made:
    with studio.sessions() as s:
        made = s.get(Made, image_id) if isinstance(image_id, int) and not isinstance(image_id, bool) else None
    if made is None or made.model != model:
        raise StudioError(404, "not_found", what="image", name=str(image_id))
    return made


def _seed_image(studio, model: str, seed: int) -> int:
    """The lineage record of a seed's image (made once), so children can point at their seed parents."""
    from sqlalchemy import select

    with studio.sessions.begin() as s:
        for made in s.scalars(select(Made).where(Made.model == model, Made.kind == "seed")):
            if made.recipe.get("seed") == seed:
                return made.id
        made = Made(model=model, kind="seed", parents=[], recipe={"seed": seed})
        s.add(made)
        s.flush()
        return made.id


__all__ = ["add_steering_routes"]
