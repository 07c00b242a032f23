/* duet's version, printed by --version of every program (and so in the
 * man pages made from --help at install). */
#ifndef DUET_VERSION_H
#define DUET_VERSION_H

#define DUET_VERSION "0.6.0"

#endif
