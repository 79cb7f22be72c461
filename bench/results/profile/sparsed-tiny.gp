set terminal pngcairo size 720,420
set output 'bench/results/profile/sparsed-tiny.png'
set datafile separator ','
set logscale x 2
set xlabel 'batch size (tokens)'
set ylabel 'union of active neurons (% of FFN)'
set yrange [0:100]
set key bottom right
set title 'Union sparsity under batching (mean over layers)'
plot 'bench/results/profile/sparsed-tiny.mean.csv' using 1:2 with linespoints title 'different sequences', '' using 1:3 with linespoints title 'consecutive tokens', '' using 1:4 with lines dashtype 2 title 'independent 1-(1-a)^B'
