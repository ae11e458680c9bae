import sys

from brevitas_amed.cli import main

sys.exit(main())
