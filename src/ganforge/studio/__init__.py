"""The studio: `ganforge studio [FOLDER]`, a local web app over a studio folder of datasets, runs and models.

A thin layer over the Python API the command line uses (it adds no model logic):

- `folder`: the studio folder and the only names a request may use in it;
- `db`: answers, lineage, jobs and model settings (SQLite with WAL by default, any SQLAlchemy URL),
  schema versioned and migrated on start;
- `security`: the token, rate limits, bounds and security headers;
- `batcher`: requests that arrive together are generated in one batch;
- `jobs`: training and preparation in managed background processes;
- `app`: the FastAPI application and its pages (static files in `static/`, no build step, no CDN);
- `words`: every message in English and Spanish.
"""
