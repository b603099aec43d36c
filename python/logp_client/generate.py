"""python3 -m logp_client.generate OUT_DIR [PROTO_DIR]: writes the logp.v1 stubs into OUT_DIR
(PROTO_DIR: the source tree's proto/ by default), e.g. for $LOGP_PYTHON_STUBS."""
import sys

from ._stubs import generate

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    generate(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
