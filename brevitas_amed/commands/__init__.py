"""Sub-commands of the ``brevitas-amed`` CLI: one module each, ``add_parser`` + ``run``."""
