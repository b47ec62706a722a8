"""The ADE20K scene-parsing benchmark's 150 classes and their colours (a published fact table, as data).

Class ids are those of the 150-class benchmark (SceneParsing / ADEChallengeData2016) after mmseg's
``reduce_zero_label``: the annotation PNGs store 0 for "other" (not a class, ignored when scoring) and
1..150 for the classes, which become ids 0..149 here. The colours are the palette mmsegmentation ships
for ADE20K, which ControlNet-style semantic-map models (and their ADE20K colour maps) use too.

One colour is shared: (140, 140, 140) is both ``road`` (6) and ``skyscraper`` (48). A colour map cannot
tell them apart; ``palette_lookup`` reads it as the lower id.
"""

from __future__ import annotations

NUM_CLASSES = 150
IGNORE_INDEX = 255  # mmseg's ignore value: "other" and colours outside the palette
OTHER_COLOR = (0, 0, 0)  # how "other" (annotation value 0) is drawn in a colour map

# id  R   G   B  name
_TABLE = """\
  0  120 120 120  wall
  1  180 120 120  building
  2    6 230 230  sky
  3   80  50  50  floor
  4    4 200   3  tree
  5  120 120  80  ceiling
  6  140 140 140  road
  7  204   5 255  bed
  8  230 230 230  windowpane
  9    4 250   7  grass
 10  224   5 255  cabinet
 11  235 255   7  sidewalk
 12  150   5  61  person
 13  120 120  70  earth
 14    8 255  51  door
 15  255   6  82  table
 16  143 255 140  mountain
 17  204 255   4  plant
 18  255  51   7  curtain
 19  204  70   3  chair
 20    0 102 200  car
 21   61 230 250  water
 22  255   6  51  painting
 23   11 102 255  sofa
 24  255   7  71  shelf
 25  255   9 224  house
 26    9   7 230  sea
 27  220 220 220  mirror
 28  255   9  92  rug
 29  112   9 255  field
 30    8 255 214  armchair
 31    7 255 224  seat
 32  255 184   6  fence
 33   10 255  71  desk
 34  255  41  10  rock
 35    7 255 255  wardrobe
 36  224 255   8  lamp
 37  102   8 255  bathtub
 38  255  61   6  railing
 39  255 194   7  cushion
 40  255 122   8  base
 41    0 255  20  box
 42  255   8  41  column
 43  255   5 153  signboard
 44    6  51 255  chest of drawers
 45  235  12 255  counter
 46  160 150  20  sand
 47    0 163 255  sink
 48  140 140 140  skyscraper
 49  250  10  15  fireplace
 50   20 255   0  refrigerator
 51   31 255   0  grandstand
 52  255  31   0  path
 53  255 224   0  stairs
 54  153 255   0  runway
 55    0   0 255  case
 56  255  71   0  pool table
 57    0 235 255  pillow
 58    0 173 255  screen door
 59   31   0 255  stairway
 60   11 200 200  river
 61  255  82   0  bridge
 62    0 255 245  bookcase
 63    0  61 255  blind
 64    0 255 112  coffee table
 65    0 255 133  toilet
 66  255   0   0  flower
 67  255 163   0  book
 68  255 102   0  hill
 69  194 255   0  bench
 70    0 143 255  countertop
 71   51 255   0  stove
 72    0  82 255  palm
 73    0 255  41  kitchen island
 74    0 255 173  computer
 75   10   0 255  swivel chair
 76  173 255   0  boat
 77    0 255 153  bar
 78  255  92   0  arcade machine
 79  255   0 255  hovel
 80  255   0 245  bus
 81  255   0 102  towel
 82  255 173   0  light
 83  255   0  20  truck
 84  255 184 184  tower
 85    0  31 255  chandelier
 86    0 255  61  awning
 87    0  71 255  streetlight
 88  255   0 204  booth
 89    0 255 194  television receiver
 90    0 255  82  airplane
 91    0  10 255  dirt track
 92    0 112 255  apparel
 93   51   0 255  pole
 94    0 194 255  land
 95    0 122 255  bannister
 96    0 255 163  escalator
 97  255 153   0  ottoman
 98    0 255  10  bottle
 99  255 112   0  buffet
100  143 255   0  poster
101   82   0 255  stage
102  163 255   0  van
103  255 235   0  ship
104    8 184 170  fountain
105  133   0 255  conveyer belt
106    0 255  92  canopy
107  184   0 255  washer
108  255   0  31  plaything
109    0 184 255  swimming pool
110    0 214 255  stool
111  255   0 112  barrel
112   92 255   0  basket
113    0 224 255  waterfall
114  112 224 255  tent
115   70 184 160  bag
116  163   0 255  minibike
117  153   0 255  cradle
118   71 255   0  oven
119  255   0 163  ball
120  255 204   0  food
121  255   0 143  step
122    0 255 235  tank
123  133 255   0  trade name
124  255   0 235  microwave
125  245   0 255  pot
126  255   0 122  animal
127  255 245   0  bicycle
128   10 190 212  lake
129  214 255   0  dishwasher
130    0 204 255  screen
131   20   0 255  blanket
132  255 255   0  sculpture
133    0 153 255  hood
134    0  41 255  sconce
135    0 255 204  vase
136   41   0 255  traffic light
137   41 255   0  tray
138  173   0 255  ashcan
139    0 245 255  fan
140   71   0 255  pier
141  122   0 255  crt screen
142    0 255 184  plate
143    0  92 255  monitor
144  184 255   0  bulletin board
145    0 133 255  shower
146  255 214   0  radiator
147   25 194 194  glass
148  102 255   0  clock
149   92   0 255  flag
"""


def _parse() -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    names, colors = [], []
    for expected, line in enumerate(_TABLE.splitlines()):
        index, red, green, blue, name = line.split(maxsplit=4)
        assert int(index) == expected, line
        names.append(name)
        colors.append((int(red), int(green), int(blue)))
    return tuple(names), tuple(colors)


CLASS_NAMES, PALETTE = _parse()
