"""Every word the studio shows, in English and Spanish. Pages ask `/api/words` for their language (the
browser's, unless the person switched); the server's own messages go through `say`, in the language of
the request's Accept-Language (or its `lang` cookie)."""

from __future__ import annotations

LANGUAGES = ("en", "es")

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "studio": "ganforge studio",
        "models": "Your models",
        "no_models": "No model yet. Bring a folder of images in Make, train it, and it appears here.",
        "make": "Make", "watch": "Watch", "dream": "This image does not exist", "game": "Which is real?",
        "breed": "Breed and steer", "translate": "Translate", "language": "Español",
        "new_image": "Another one", "seed": "Seed", "permalink": "Link to this image", "download": "Download",
        "truncation": "Typical ↔ varied", "pick_real": "Click the photo you think is real.",
        "it_was_real": "Right: that one was real.", "it_was_fake": "Fooled: that one was generated.",
        "next_round": "Next", "fooling_rate": "Fooling rate", "answers": "answers", "export_csv": "Export CSV",
        "no_real": "The owner has not allowed real images of this model to be shown, so there is no game for it.",
        "parents": "Parents", "children": "Children", "keep": "Keep", "breed_now": "Breed",
        "mutation": "Mutation", "lineage": "Lineage", "upload": "Upload an image", "draw": "or draw",
        "run_translation": "Translate", "dataset": "Dataset", "resolution": "Resolution",
        "start_training": "Start training", "stop": "Stop", "resume": "Resume", "export": "Export",
        "drop_zip": "A zip of your images", "or_folder": "or a folder", "inspect": "What is in it", "kimg": "Thousand images to train on",
        "shareable": "Shown to others", "show_real": "Real images in the game", "private": "private",
        "status": "Status", "health": "Health", "losses": "Losses", "progress": "Progress",
        "token_needed": "This studio needs its token: open the address it printed (with ?token=...).",
        "pick_two": "Pick at least two parents: click their pictures.", "mode": "How to mix",
        "blend": "blend", "crossover": "crossover", "genes": "genes (layer groups)",
        "direction": "Direction", "find_directions": "Find directions (PCA)",
        "steer_hint": "The sliders move the first parent you pick (until then, the first picture).",
        "attributes": "Attributes", "style_mix": "Style mixing", "layers": "Layers taken from the first",
        "coarse": "coarse (pose, shape)", "middle": "middle (features)", "fine": "fine (colour, texture)",
        "the_rest": "the rest", "mix_now": "Mix", "mix_hint": "Pick two parents to mix their styles.",
        "lineage_hint": "The oldest ancestors at the top; each line joins a parent to its child. Click one to see its own tree.",
        "preset": "Model", "defaults": "the best for this data",
        "compare": "Compared", "lower_better": "lower is better", "loss_G": "the generator's loss (no KID measured yet)",
    },
    "es": {
        "studio": "estudio ganforge",
        "models": "Tus modelos",
        "no_models": "Aún no hay modelos. Trae una carpeta de imágenes en Crear, entrénala y aparecerá aquí.",
        "make": "Crear", "watch": "Seguir", "dream": "Esta imagen no existe", "game": "¿Cuál es real?",
        "breed": "Cruzar y dirigir", "translate": "Transformar", "language": "English",
        "new_image": "Otra", "seed": "Semilla", "permalink": "Enlace a esta imagen", "download": "Descargar",
        "truncation": "Típica ↔ variada", "pick_real": "Haz clic en la foto que crees que es real.",
        "it_was_real": "Correcto: esa era real.", "it_was_fake": "Te engañó: esa era generada.",
        "next_round": "Siguiente", "fooling_rate": "Tasa de engaño", "answers": "respuestas",
        "export_csv": "Exportar CSV",
        "no_real": "El dueño no permite mostrar imágenes reales de este modelo, así que no hay juego con él.",
        "parents": "Padres", "children": "Hijos", "keep": "Guardar", "breed_now": "Cruzar",
        "mutation": "Mutación", "lineage": "Linaje", "upload": "Sube una imagen", "draw": "o dibuja",
        "run_translation": "Transformar", "dataset": "Datos", "resolution": "Resolución",
        "start_training": "Empezar a entrenar", "stop": "Parar", "resume": "Continuar", "export": "Exportar",
        "drop_zip": "Un zip con tus imágenes", "or_folder": "o una carpeta", "inspect": "Qué contiene", "kimg": "Miles de imágenes para entrenar",
        "shareable": "Visible para otros", "show_real": "Imágenes reales en el juego", "private": "privado",
        "status": "Estado", "health": "Salud", "losses": "Pérdidas", "progress": "Progreso",
        "token_needed": "Este estudio necesita su clave: abre la dirección que mostró (con ?token=...).",
        "pick_two": "Elige al menos dos padres: haz clic en sus imágenes.", "mode": "Cómo mezclar",
        "blend": "mezcla", "crossover": "cruce", "genes": "genes (grupos de capas)",
        "direction": "Dirección", "find_directions": "Buscar direcciones (PCA)",
        "steer_hint": "Los controles mueven el primer padre que elijas (hasta entonces, la primera imagen).",
        "attributes": "Atributos", "style_mix": "Mezcla de estilos", "layers": "Capas tomadas de la primera",
        "coarse": "gruesas (pose, forma)", "middle": "medias (rasgos)", "fine": "finas (color, textura)",
        "the_rest": "el resto", "mix_now": "Mezclar", "mix_hint": "Elige dos padres para mezclar sus estilos.",
        "lineage_hint": "Los antepasados más antiguos arriba; cada línea une un padre con su hijo. Haz clic en uno para ver su propio árbol.",
        "preset": "Modelo", "defaults": "el mejor para estos datos",
        "compare": "Comparación", "lower_better": "cuanto menor, mejor", "loss_G": "la pérdida del generador (aún sin KID medido)",
    },
}

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "not_found": "There is no {what} called {name!r} in this studio.",
        "private": "{name!r} is private: its owner has not shared it.",
        "owner_only": "Only the studio's owner (on this computer) can do that.",
        "token": "This studio needs its token: open the address it printed, with ?token=..., or send it as "
                 "'Authorization: Bearer TOKEN'.",
        "rate": "Too many requests from you at once: wait a moment and try again.",
        "seed": "The seed must be a whole number from 0 to {top:,}.",
        "truncation": "Truncation must be a number from 0 to 2 (1 means none).",
        "count": "Ask for 1 to {top} images at a time.",
        "too_big": "That file is {size:.1f} MB; the studio takes uploads of at most {top} MB.",
        "too_many_pixels": "That image has {pixels:,} pixels; the studio takes at most {top:,} (40 megapixels).",
        "not_image": "That file is not an image the studio can read (PNG, JPEG, WebP, GIF, BMP or TIFF).",
        "no_real": "The owner has not allowed real images of {name!r} to be shown.",
        "round_done": "That round was already answered.",
        "side": "Pick 'left' or 'right'.",
        "not_translator": "{name!r} makes new images; translation needs an image-to-image model.",
        "not_generator": "{name!r} turns images into images; this needs a generator.",
        "bad_request": "The request is not what this page sends: {detail}",
        "server": "Something went wrong in the studio; the details are in its log. Nothing was lost.",
        "job_busy": "That job is {status}; it cannot be {action} now.",
        "not_zip": "That upload is not a zip file of images.",
    },
    "es": {
        "not_found": "No hay ningún {what} llamado {name!r} en este estudio.",
        "private": "{name!r} es privado: su dueño no lo ha compartido.",
        "owner_only": "Solo el dueño del estudio (en este ordenador) puede hacer eso.",
        "token": "Este estudio necesita su clave: abre la dirección que mostró, con ?token=..., o envíala como "
                 "'Authorization: Bearer CLAVE'.",
        "rate": "Demasiadas peticiones tuyas a la vez: espera un momento y vuelve a intentarlo.",
        "seed": "La semilla debe ser un número entero de 0 a {top:,}.",
        "truncation": "El truncamiento debe ser un número de 0 a 2 (1 significa ninguno).",
        "count": "Pide de 1 a {top} imágenes cada vez.",
        "too_big": "Ese archivo ocupa {size:.1f} MB; el estudio acepta como máximo {top} MB.",
        "too_many_pixels": "Esa imagen tiene {pixels:,} píxeles; el estudio acepta como máximo {top:,} (40 megapíxeles).",
        "not_image": "Ese archivo no es una imagen que el estudio pueda leer (PNG, JPEG, WebP, GIF, BMP o TIFF).",
        "no_real": "El dueño no permite mostrar imágenes reales de {name!r}.",
        "round_done": "Esa ronda ya tiene respuesta.",
        "side": "Elige 'left' (izquierda) o 'right' (derecha).",
        "not_translator": "{name!r} crea imágenes nuevas; transformar necesita un modelo de imagen a imagen.",
        "not_generator": "{name!r} transforma imágenes; esto necesita un generador.",
        "bad_request": "La petición no es la que envía esta página: {detail}",
        "server": "Algo falló en el estudio; los detalles están en su registro. No se perdió nada.",
        "job_busy": "Ese trabajo está {status}; ahora no se puede {action}.",
        "not_zip": "Eso no es un archivo zip de imágenes.",
    },
}


def language(accept: str | None, chosen: str | None = None) -> str:
    """The language to answer in: the one chosen (cookie or ?lang=), else the first of Accept-Language we
    speak, else English."""
    if chosen in LANGUAGES:
        return chosen
    for part in (accept or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "en"


def say(lang: str, key: str, **values) -> str:
    return MESSAGES.get(lang, MESSAGES["en"])[key].format(**values)


assert all(WORDS["en"].keys() == WORDS[k].keys() for k in LANGUAGES), "every word in every language"
assert all(MESSAGES["en"].keys() == MESSAGES[k].keys() for k in LANGUAGES), "every message in every language"
