"""emotion-sidecar's demo: a small dungeon game that reads the player's face through emotiond.

What it shows: live emotions in a HUD (the current emotion, its seven probabilities, faces seen,
connection, camera and source); before each event (a chest, a spike hall, a boss) the game asks
"What are you about to do?", marks the event as an intent window with the SDK, and afterwards
shows the daemon's analysis: the language model's words, the share of time per emotion and the
emotion curve over the window, and which backend answered.

Controls: arrows or WASD move; SPACE acts (pick a lock, strike); Enter confirms; C turns the
camera off (or on again); F12 saves a screenshot; Esc quits.

Run it with ``emotion-demo`` or ``python -m demo_game`` (``--help`` lists the options).
"""
