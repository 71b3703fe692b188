"""Multi-user chat (XEP-0045) on ``conference.<domain>``, bridged to topics ``muc/<room>``:
room logic (``room``, ``config``, ``archive``), the component (``service``), the store of
persistent rooms (``store``) and the topic bridge (``bridge``)."""
